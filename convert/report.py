"""One accuracy and speed table for a converted model folder: PyTorch fp32 beside TFLite fp32/fp16/int8.

Every row is measured the same way in the same run: mAP through `convert.evaluate` (the device's
letterbox, decode and NMS), file size, and the median time of the model call alone on real images.
The figures are written beside the models (report.md, report.json) and into each model's metadata,
so a model file carries the accuracy it was measured at.
"""
from __future__ import annotations

import datetime
import json
import logging
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

from convert.download import sha256_of
from convert.dataset import read_dataset, read_image
from convert.errors import ConvertError
from convert.evaluate import EVAL_CONF, EVAL_IOU, EVAL_MAX_DET, EvalResult, evaluate, open_backend
from edge.errors import EdgeError
from edge.model.metadata import read_metadata, sidecar_path, write_metadata

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
TIMING_RUNS = 20
TIMING_IMAGES = 8
MB = 1e6
REPORT_MD = "report.md"
REPORT_JSON = "report.json"
# Default data sets under the shared data root: all 80 classes, and person (class 0) only.
DEFAULT_DATA = (("data/coco-train130", None), ("data/coco-val-person700", [0]))


@dataclass(frozen=True)
class DataSpec:
    """A data set to evaluate on, optionally restricted to some classes."""

    folder: Path
    classes: list[int] | None = None

    @property
    def label(self) -> str:
        suffix = "" if self.classes is None else " classes " + ",".join(map(str, self.classes))
        return self.folder.name + suffix


def parse_data_spec(text: str) -> DataSpec:
    """`DIR` or `DIR:0,2` (the classes to keep)."""
    match = re.fullmatch(r"(.+?):(\d+(?:,\d+)*)", text)
    if match:
        return DataSpec(Path(match.group(1)), [int(c) for c in match.group(2).split(",")])
    return DataSpec(Path(text))


@dataclass
class Row:
    model: Path
    backend: str
    precision: str
    size_mb: float
    invoke_ms: float
    results: list[EvalResult] = field(default_factory=list)


def find_models(folder: Path, imgsz: str | None) -> dict[str, Path]:
    """The `<stem>_{fp32,fp16,int8}.tflite` files of one conversion in `folder`."""
    if not folder.is_dir():
        raise ConvertError(f"--dir {folder} does not exist: pass the folder `edge-convert export --out` wrote")
    stems = sorted({p.name[: -len(f"_{prec}.tflite")] for prec in PRECISIONS
                    for p in folder.glob(f"*_{prec}.tflite")})
    if imgsz is not None:
        size = str(imgsz).replace(",", "x")
        stems = [s for s in stems if s.endswith(f"_{size}")]
    if not stems:
        raise ConvertError(f"{folder} holds no *_fp32/_fp16/_int8.tflite models"
                           + (f" at --imgsz {imgsz}" if imgsz else ""))
    if len(stems) > 1:
        raise ConvertError(f"{folder} holds several conversions ({', '.join(stems)}): choose one with --imgsz")
    stem = stems[0]
    return {prec: folder / f"{stem}_{prec}.tflite" for prec in PRECISIONS if (folder / f"{stem}_{prec}.tflite").is_file()}


def build_report(folder: Path, data: list[DataSpec], weights: Path | None = None, imgsz: str | None = None,
                 threads: int = 2, limit: int | None = None) -> list[Row]:
    """Evaluate and time the PyTorch checkpoint (when given) and every TFLite model of the folder."""
    models = find_models(folder, imgsz)
    reference_meta = read_metadata(next(iter(models.values())))
    imgsz_hw = reference_meta.imgsz_hw
    candidates: list[Path] = []
    if weights is not None:
        if not weights.is_file():
            raise ConvertError(f"--weights {weights} does not exist: pass the .pt the models were converted from")
        _check_source(weights, reference_meta.raw.get("source", {}))
        candidates.append(weights)
    candidates += list(models.values())
    sets = {spec.label: read_dataset(spec.folder, reference_meta.nc, limit) for spec in data}
    timing_frames = [read_image(s.image) for s in next(iter(sets.values()))[:TIMING_IMAGES]]
    rows = []
    for path in candidates:
        size = f"{imgsz_hw[0]},{imgsz_hw[1]}" if path.suffix == ".pt" else None
        row = None
        for spec in data:
            backend = open_backend(path, size, spec.classes, threads)
            if row is None:
                row = Row(path, backend.kind, backend.precision, path.stat().st_size / MB,
                          backend.invoke_ms(timing_frames, TIMING_RUNS))
            row.results.append(evaluate(backend, sets[spec.label], spec.label))
        rows.append(row)
    return rows


def _check_source(weights: Path, source: dict):
    """Warn when the checkpoint is not the one the models were converted from: the rows would not compare."""
    expected = source.get("sha256")
    if expected and weights.is_file() and sha256_of(weights) != expected:
        log.warning("%s is not the checkpoint these models were converted from (%s, sha256 %s...)",
                    weights, source.get("file"), expected[:12])


def markdown(rows: list[Row], data: list[DataSpec], threads: int) -> str:
    """The table: one row per model, mAP50-95 / mAP50 per data set, size and median invoke time."""
    head = ["model", "backend", "precision", "size MB", "invoke ms"]
    for spec in data:
        head += [f"{spec.label} mAP50-95", f"{spec.label} mAP50"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.model.name, row.backend, row.precision, f"{row.size_mb:.2f}", f"{row.invoke_ms:.1f}"]
        for result in row.results:
            cells += [f"{result.map50_95:.2f}", f"{result.map50:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    images = ", ".join(f"{spec.label}: {r.images} images" for spec, r in zip(data, rows[0].results))
    lines += ["", f"Input {'x'.join(map(str, rows[0].results[0].imgsz))}, square letterbox as on the device, "
                  f"conf {EVAL_CONF}, IoU {EVAL_IOU}, max {EVAL_MAX_DET} detections, multi-label; "
                  f"mAP by pycocotools ({images}). invoke ms: median of {TIMING_RUNS} model calls "
                  f"after warm-up, {threads} threads, {platform.machine()}, {datetime.date.today().isoformat()}."]
    return "\n".join(lines) + "\n"


def as_json(rows: list[Row], threads: int) -> dict:
    return {
        "machine": platform.machine(), "threads": threads, "date": datetime.date.today().isoformat(),
        "timing_runs": TIMING_RUNS,
        "rows": [{"model": r.model.name, "backend": r.backend, "precision": r.precision,
                  "size_mb": round(r.size_mb, 3), "invoke_ms_median": round(r.invoke_ms, 2),
                  "results": [res.as_dict() for res in r.results]} for r in rows],
    }


def write_report(folder: Path, rows: list[Row], data: list[DataSpec], threads: int) -> str:
    """report.md and report.json in `folder`, and each TFLite model's `metrics` metadata; returns the table."""
    table = markdown(rows, data, threads)
    (folder / REPORT_MD).write_text(table, encoding="utf-8")
    (folder / REPORT_JSON).write_text(json.dumps(as_json(rows, threads), indent=1) + "\n", encoding="utf-8")
    for row in rows:
        if row.backend == "tflite":
            store_metrics(row, threads)
    return table


def store_metrics(row: Row, threads: int):
    """Write the row's figures into the model's metadata (appended document and sidecar, if any)."""
    try:
        raw = dict(read_metadata(row.model).raw)
    except EdgeError as exc:
        raise ConvertError(str(exc)) from None
    raw["metrics"] = {
        "map": {res.data: {"map50_95": round(res.map50_95, 3), "map50": round(res.map50, 3), "images": res.images,
                           "conf": EVAL_CONF, "iou": EVAL_IOU} for res in row.results},
        "invoke_ms_median": round(row.invoke_ms, 2),
        "invoke_threads": threads,
        "measured_on": platform.machine(),
        "date": datetime.date.today().isoformat(),
    }
    write_metadata(row.model, raw)
    sidecar = sidecar_path(row.model)
    if sidecar.is_file():
        sidecar.write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
