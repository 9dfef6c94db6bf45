"""Accuracy against measured int8 latency, and the curve a lighter model has to beat.

The original model run at a smaller input (288, 256, 224 instead of 320) is faster with no training
at all. Those points form a curve; a pruned model is worth shipping only if it sits above it, that
is, more accurate than the original at the input size that runs as fast. Latencies come from one
interleaved timing run of all the int8 models (`convert.speed`), so the points compare.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from convert.errors import ConvertError

CHART_DPI = 110


@dataclass
class Variant:
    """One model on the chart: `original` marks the unpruned model (at `imgsz`), the curve's points."""

    label: str
    model: Path
    original: bool
    imgsz: int
    macs: int | None = None
    latency_ms: float | None = None
    latency_1t_ms: float | None = None
    scores: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {**asdict(self), "model": str(self.model)}


def curve_at(originals: list[Variant], key: str, latency_ms: float) -> float | None:
    """The originals' score at this latency, linear between measured sizes; None outside their range."""
    points = sorted((v.latency_ms, v.scores[key]) for v in originals if key in v.scores and v.latency_ms)
    for (l0, s0), (l1, s1) in zip(points, points[1:]):
        if l0 <= latency_ms <= l1:
            return s0 if l1 == l0 else s0 + (s1 - s0) * (latency_ms - l0) / (l1 - l0)
    if points and latency_ms == points[0][0]:
        return points[0][1]
    return None


def verdict(variant: Variant, originals: list[Variant], key: str) -> str:
    """Plain words: is this variant above the originals' curve on `key`?"""
    if variant.original:
        return "original"
    at = curve_at(originals, key, variant.latency_ms)
    if at is None:
        fastest = min((v for v in originals if v.latency_ms), key=lambda v: v.latency_ms, default=None)
        if fastest is not None and variant.latency_ms < fastest.latency_ms:
            return "faster than every original size measured (no curve point to compare)"
        return "slower than the original at full size: not worth shipping"
    gap = variant.scores[key] - at
    if gap > 0:
        return f"above the curve (+{gap:.2f})"
    return f"NOT above the curve ({gap:.2f}): the original at a smaller input is as fast and more accurate"


def table(variants: list[Variant], keys: list[str], reference: Variant) -> str:
    """Markdown: one row per variant, fastest first, with its speed-up over `reference` and verdicts."""
    originals = [v for v in variants if v.original]
    head = ["variant", "imgsz", "MACs", "int8 ms (2 thr)", "speed-up", "int8 ms (1 thr)", "speed-up 1 thr"]
    head += keys + [f"vs curve ({keys[0]})"] if keys else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in sorted(variants, key=lambda v: v.latency_ms or 0.0):
        cells = [v.label, str(v.imgsz), f"{v.macs / 1e6:.0f}M" if v.macs else "-",
                 _ms(v.latency_ms), _ratio(reference.latency_ms, v.latency_ms),
                 _ms(v.latency_1t_ms), _ratio(reference.latency_1t_ms, v.latency_1t_ms)]
        cells += [f"{v.scores[k]:.2f}" if k in v.scores else "-" for k in keys]
        if keys:
            cells.append(verdict(v, originals, keys[0]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _ms(value):
    return "-" if value is None else f"{value:.2f}"


def _ratio(base, value):
    return "-" if not base or not value else f"{base / value:.2f}x"


def chart(variants: list[Variant], keys: list[str], path: Path, title: str) -> Path:
    """A PNG with one panel per score: the originals as a line through their sizes, the rest as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not keys:
        raise ConvertError("nothing to chart: no scores were measured")
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 4.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        originals = sorted((v for v in variants if v.original and key in v.scores), key=lambda v: v.latency_ms)
        ax.plot([v.latency_ms for v in originals], [v.scores[key] for v in originals], "o-", color="tab:blue",
                label="original at smaller inputs")
        for v in originals:
            ax.annotate(str(v.imgsz), (v.latency_ms, v.scores[key]), textcoords="offset points", xytext=(4, -10),
                        fontsize=8, color="tab:blue")
        for v in (v for v in variants if not v.original and key in v.scores):
            ax.plot(v.latency_ms, v.scores[key], "s", color="tab:red")
            ax.annotate(v.label, (v.latency_ms, v.scores[key]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("int8 invoke, ms (measured, interleaved)")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=CHART_DPI)
    plt.close(fig)
    return path


def write_curve(variants: list[Variant], keys: list[str], reference: Variant, folder: Path, title: str,
                notes: str = "") -> str:
    """curve.md, curve.json and curve.png in `folder`; returns the table."""
    folder.mkdir(parents=True, exist_ok=True)
    text = table(variants, keys, reference)
    (folder / "curve.md").write_text(f"{title}\n\n{text}\n{notes}\n", encoding="utf-8")
    (folder / "curve.json").write_text(json.dumps({"title": title, "keys": keys, "reference": reference.label,
                                                   "variants": [v.as_dict() for v in variants]}, indent=1) + "\n")
    chart(variants, keys, folder / "curve.png", title)
    return text
