"""The report as text: the output heads, the worst tensors, the largest drops."""
from __future__ import annotations

from pathlib import Path

from convert.explain.stats import PERCENTILE, Report, TensorStats, db_text, short_name

DROP_ROWS = 5
TABLE_COLUMNS = ("SQNR dB", "drop dB", "rel err", "err/step", "clip %", "scale", "step/own", "min", "max", "p99.99|x|", "max/p", "op",
                 "concat", "shape", "tensor")


def _row(t: TensorStats) -> list[str]:
    steps = t.error_steps
    drop = "-" if t.drop_db is None else f"{round(t.drop_db, 1) + 0.0:.1f}"  # no "-0.0"
    name = short_name(t.name) if t.head is None else f"stride {t.head} ({t.name})"
    return [db_text(t.sqnr_db), drop, f"{t.relative_error:.3f}", "-" if steps is None else f"{steps:.2f}",
            f"{100 * t.clipped_fraction:.2f}", "-" if t.scale is None else f"{t.scale:.4g}",
            "-" if t.step_ratio is None else f"{t.step_ratio:.2f}",
            f"{t.min:.3g}", f"{t.max:.3g}", f"{t.percentile_abs:.3g}", f"{t.outlier_ratio:.2f}", t.op,
            t.concat or "-", "x".join(map(str, t.shape[1:])), name]


def format_table(rows: list[TensorStats]) -> str:
    cells = [list(TABLE_COLUMNS)] + [_row(t) for t in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(TABLE_COLUMNS))]
    numeric = TABLE_COLUMNS.index("op")  # numbers right-aligned, words left
    lines = ["  ".join(c.rjust(w) if i < numeric else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in cells]
    return "\n".join(lines)


def format_report(report: Report, top: int = 15) -> str:
    matched = report.matched_by_name + report.matched_through_wrapper
    unmatched = f", unmatched: {', '.join(map(short_name, report.unmatched))}" if report.unmatched else ""
    return "\n".join([
        f"{Path(report.int8).name} against {Path(report.fp32).name} on {report.images} images: "
        f"{matched} intermediate tensors matched ({report.matched_by_name} by name, "
        f"{report.matched_through_wrapper} through a QUANTIZE wrapper), {len(report.heads)} output heads by "
        f"stride{unmatched}",
        "",
        "Output heads:",
        format_table(report.heads),
        "",
        f"Worst {min(top, len(report.tensors))} of {len(report.tensors)} tensors by SQNR "
        f"(drop = SQNR lost at this op beyond its worst input; concat: in/out = scale forced by a "
        f"Concatenation; max/p = max|x| over the {PERCENTILE}th percentile; step/own = the int8 step over the one the tensor's range "
        f"on these images needs):",
        format_table(report.tensors[:top]),
        "",
        f"Largest {min(DROP_ROWS, len(report.drops()))} drops (where the error is added rather than carried in):",
        format_table(report.drops()[:DROP_ROWS]),
        "",
        report.summary(),
    ])
