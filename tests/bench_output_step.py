"""How much accuracy the int8 output step alone costs: PyTorch with its sigmoid maps put on the
int8 output grid (scale 1/256, zero point -128) against plain PyTorch, on the same images; and,
as a third row, what the int8 weights alone cost (per-channel symmetric, as TFLite rounds them,
with float activations).

Every score under half a step becomes 0 on that grid, so the low-confidence end of the
precision-recall curve is cut; nothing else of int8 is simulated here, so the difference is that
cut (and the rounding of the other scores and box values) alone.

    python -m tests.bench_output_step --weights ../shared/models/yolov5n.pt --data ../shared/data/coco-train130
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from convert.checkpoint import load_checkpoint
from convert.dataset import read_dataset
from convert.evaluate import TorchBackend, evaluate
from convert.export import parse_imgsz

OUTPUT_SCALE = 1 / 256
OUTPUT_ZERO_POINT = -128


def on_int8_grid(values: np.ndarray) -> np.ndarray:
    """`values` in [0, 1] quantized and dequantized as the int8 model's outputs are."""
    q = np.clip(np.round(values / OUTPUT_SCALE) + OUTPUT_ZERO_POINT, -128, 127)
    return ((q - OUTPUT_ZERO_POINT) * OUTPUT_SCALE).astype(np.float32)


def with_int8_weights(model):
    """A copy of the fused model whose convolution weights sit on TFLite's per-channel int8 grid."""
    import copy

    import torch

    fused = copy.deepcopy(model).fuse().eval()
    with torch.no_grad():
        for module in fused.modules():
            if isinstance(module, torch.nn.Conv2d):
                step = module.weight.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) / 127
                module.weight.copy_(torch.round(module.weight / step) * step)
    return fused


class GridTorchBackend(TorchBackend):
    """PyTorch, its head outputs rounded to the int8 output grid before decoding."""

    def heads(self, image_hwc):
        return {stride: on_int8_grid(out) for stride, out in super().heads(image_hwc).items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--imgsz", default="320")
    parser.add_argument("--classes", type=int, nargs="*", default=None)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    model = load_checkpoint(args.weights).model
    imgsz = parse_imgsz(args.imgsz)
    rows = []
    for name, kind, net in (("pytorch", TorchBackend, model),
                            ("pytorch, outputs on the int8 grid", GridTorchBackend, model),
                            ("pytorch, int8 weights", TorchBackend, with_int8_weights(model))):
        backend = kind(net, args.weights, imgsz, args.classes)
        samples = read_dataset(args.data, backend.meta.nc, args.limit)
        result = evaluate(backend, samples, str(args.data))
        rows.append((name, result.map50_95, result.map50, result.detections))
    print(f"{args.data.name} at {imgsz[0]}x{imgsz[1]}" + (f", classes {args.classes}" if args.classes else ""))
    for name, m, m50, n in rows:
        print(f"  {name:36s} mAP50-95 {m:6.2f}  mAP50 {m50:6.2f}  detections {n}")
    print(f"  cost of the output grid alone: {rows[0][1] - rows[1][1]:+.2f} mAP50-95, {rows[0][2] - rows[1][2]:+.2f} mAP50")
    print(f"  cost of the int8 weights alone: {rows[0][1] - rows[2][1]:+.2f} mAP50-95, {rows[0][2] - rows[2][2]:+.2f} mAP50")
    return 0


if __name__ == "__main__":
    sys.exit(main())
