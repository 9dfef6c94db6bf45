"""Where the runtime's own per-frame time goes, on the bench images: the resize, and decode + NMS.

`edge-detect bench` times each stage where it really runs. Two fixed costs dominate the runtime's
share, and this run isolates them:

- the resize inside the letterbox (``cv2.resize`` of the photo to the input size, alone);
- decode + NMS right after ``invoke()`` against the same call repeated at once on the same
  outputs: the inference evicts the caches, and every numpy call pays to bring its code and data
  back, so the first figure is what a frame costs and the gap is the price of each numpy call;
- the least any decoder must do after ``invoke()``: one pass over the objectness of every row.

    python tests/bench_overhead.py --model M.tflite [--frames 300] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.bench import _cycle_images, default_bench_images  # noqa: E402
from edge.detect.detector import Detector  # noqa: E402
from edge.detect.letterbox import letterbox_into, letterbox_params  # noqa: E402
from edge.detect.postprocess import OBJ_CHANNEL  # noqa: E402

US_PER_S = 1e6


def median_us(seconds: list[float]) -> float:
    return float(np.median(seconds)) * US_PER_S


def objectness_pass(outputs: dict[int, np.ndarray], thresholds: dict, channels: int) -> list[np.ndarray]:
    """The rows of each level whose raw objectness reaches its threshold (what every decode starts with)."""
    return [np.flatnonzero(raw.reshape(-1, channels)[:, OBJ_CHANNEL] >= thresholds[stride]) for stride, raw in outputs.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    detector = Detector(args.model, threads=args.threads)
    model, decode = detector.model, detector.decoder
    height, width = detector.meta.imgsz_hw
    images = _cycle_images(default_bench_images())
    channels = detector.meta.channels_per_anchor
    resize, after_invoke, repeated, scan = [], [], [], []
    for _ in range(args.frames):
        frame = next(images)
        size = letterbox_params((frame.shape[1], frame.shape[0]), (width, height)).resized_wh
        start = time.perf_counter()
        cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
        resize.append(time.perf_counter() - start)

        letterbox_into(frame, model.input_view(), detector.color_order)
        model.invoke()
        outputs = model.outputs()
        for times in (after_invoke, repeated):
            start = time.perf_counter()
            decode(outputs)
            times.append(time.perf_counter() - start)
        del outputs  # the interpreter refuses to invoke while views of its buffers are alive

        model.invoke()
        outputs = model.outputs()
        # the decoder's own raw thresholds (dictionary look-ups, no numpy work before the timing)
        thresholds = {stride: decode.level_constants(stride, raw.dtype)[0] for stride, raw in outputs.items()}
        start = time.perf_counter()
        objectness_pass(outputs, thresholds, channels)
        scan.append(time.perf_counter() - start)
        del outputs
    cold, warm = median_us(after_invoke), median_us(repeated)
    print(f"medians of {args.frames} frames")
    print(f"resize alone (cv2.resize to the input size): {median_us(resize):.0f} µs")
    print(f"decode + NMS: {cold:.0f} µs right after invoke, {warm:.0f} µs repeated on the same outputs ({cold / warm:.1f}x)")
    print(f"objectness pass alone, right after invoke: {median_us(scan):.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
