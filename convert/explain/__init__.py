"""Which tensors of an int8 model lose the most against its fp32 twin, measured on real images.

Both TFLite files come from the same onnx2tf graph, so their activation tensors carry the same
names. Every tensor of both models is kept (`experimental_preserve_all_tensors`), the int8 one is
dequantized with its own scale and zero point, and the difference to the fp32 tensor of the same
name is the quantization error accumulated up to that point. The worst tensors point at what to fix
for a checkpoint: a range stretched by outliers, values clipped at the int8 ends, or a range forced
wide because a Concatenation makes its inputs share one scale.

The default XNNPACK delegate is left out: a delegated graph never writes its intermediate tensors,
so both models run on TFLite's built-in kernels here. Their int8 outputs differ from XNNPACK's by
rounding here and there, not in size: on yolov5n at 320 the SQNR of the heads agreed within 0.2 dB.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from convert.errors import ConvertError
from convert.explain.graph import Graph, open_pair, pairs
from convert.explain.stats import Report, TensorStats, set_drops
from convert.explain.table import format_report, format_table

__all__ = ["Graph", "Report", "TensorStats", "explain", "format_report", "format_table", "open_pair"]


def explain(int8_path: Path, fp32_path: Path, images: list[np.ndarray], require_int8: bool = True) -> Report:
    """Compare every matching tensor of the two models on these letterboxed uint8 RGB images."""
    if not images:
        raise ConvertError("no images to compare the models on: pass --images with a folder of photos")
    quant, ref = open_pair(int8_path, fp32_path, require_int8)
    height, width = quant.input_shape[1:3]
    if images[0].shape[:2] != (height, width):
        raise ConvertError(f"images are {images[0].shape[1]}x{images[0].shape[0]}, the models take {width}x{height}")
    matched, matching = pairs(quant, ref, height)
    for image in images:
        quant.feed(image)
        ref.feed(image)
        for index, twin, stats in matched:
            approx = quant.value(index)
            stats.add(ref.value(twin), approx, approx.size * len(images))
    set_drops([s for _, _, s in matched])
    heads = sorted((s for _, _, s in matched if s.head is not None), key=lambda s: s.head)
    tensors = sorted((s for _, _, s in matched if s.head is None), key=lambda s: (s.sqnr_db, s.name))
    return Report(int8=str(int8_path), fp32=str(fp32_path), images=len(images), tensors=tensors, heads=heads,
                  **matching)


