"""Measure a set of converted int8 models side by side: speed, agreement with the original, accuracy.

Shared by `slim` (which makes the variants) and `report --variants` (which is given them). Every
figure is measured in the same run on the same machine: the latencies in one interleaved timing
run over all the models, at the interpreter threads asked for and at one thread.
"""
from __future__ import annotations

import logging
from pathlib import Path

from convert.curve import Variant
from convert.errors import ConvertError
from convert.speed import compare_speed
from edge.errors import EdgeError
from edge.model.metadata import read_metadata

log = logging.getLogger(__name__)

PSEUDO_KEY = "pseudo mAP50-95 (held-out photos)"
SPEED_RUNS = 100


def int8_model(folder: Path) -> Path:
    """The one `*_int8.tflite` an export folder holds."""
    found = sorted(Path(folder).glob("*_int8.tflite"))
    if len(found) != 1:
        raise ConvertError(f"{folder} holds {len(found)} int8 models: pass folders written by `edge-convert export`, "
                           "one conversion each")
    return found[0]


def variants_from_folders(folders: list[Path]) -> list[Variant]:
    """One variant per export folder; those converted from the first folder's checkpoint are the originals."""
    variants, reference_sha = [], None
    for folder in folders:
        model = int8_model(folder)
        try:
            meta = read_metadata(model)
        except EdgeError as exc:
            raise ConvertError(str(exc)) from None
        sha = meta.raw.get("source", {}).get("sha256")
        reference_sha = reference_sha or sha
        variants.append(Variant(label=Path(folder).name, model=model, original=sha == reference_sha,
                                imgsz=int(meta.imgsz_hw[0])))
    return variants


def time_variants(variants: list[Variant], threads: int, runs: int = SPEED_RUNS):
    """Median int8 invoke of every variant, interleaved, at `threads` and at 1 thread."""
    paths = [v.model for v in variants]
    for v, t in zip(variants, compare_speed(paths, runs, threads)):
        v.latency_ms = t.median_ms
    if threads != 1:
        for v, t in zip(variants, compare_speed(paths, runs, 1)):
            v.latency_1t_ms = t.median_ms
    else:
        for v in variants:
            v.latency_1t_ms = v.latency_ms


def score_pseudo(variants: list[Variant], reference_weights: Path, photos: Path, imgsz: int, threads: int):
    """Each variant's mAP50-95 against the reference checkpoint's own detections on the held-out photos."""
    import torch

    from convert.checkpoint import load_checkpoint
    from convert.evaluate import TorchBackend, open_backend
    from convert.holdout import pool_split
    from convert.pseudo_map import pseudo_labels, pseudo_map, read_frames

    torch.set_num_threads(threads)
    _, held = pool_split(photos)
    reference = load_checkpoint(reference_weights).model
    labels = pseudo_labels(TorchBackend(reference, reference_weights, (imgsz, imgsz), None), read_frames(held),
                           list(reference.names))
    log.info("pseudo-labels: %d boxes on %d held-out photos of %s", labels.boxes, len(held), photos)
    for v in variants:
        v.scores[PSEUDO_KEY] = pseudo_map(open_backend(v.model, threads=threads), labels)
    return labels


def score_labelled(variants: list[Variant], specs, threads: int):
    """Each variant's mAP50-95 on labelled data sets (`convert.report.DataSpec`): reporting only."""
    from convert.dataset import read_dataset
    from convert.evaluate import evaluate, open_backend

    for spec in specs:
        for v in variants:
            backend = open_backend(v.model, classes=spec.classes, threads=threads)
            v.scores[spec.label] = evaluate(backend, read_dataset(spec.folder, backend.meta.nc), spec.label).map50_95
