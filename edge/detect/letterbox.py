"""Letterbox a camera frame straight into the model's input buffer, and map boxes back.

Aspect ratio is kept, the rest is padded with grey (114) split evenly on both sides, as the
YOLOv5 models were trained. Int8 input is written as ``pixel ^ 128`` reinterpreted as int8,
which equals ``pixel - 128`` (scale 1/255, zero point -128) with no float arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114
INT8_FLIP = 128  # uint8 ^ 128 viewed as int8 == uint8 - 128
PIXEL_MAX = 255.0
COLOR_ORDERS = ("bgr", "rgb")


@dataclass(frozen=True)
class LetterboxParams:
    """How a frame was placed in the input: input = frame * scale + pad.

    ``scale_x``/``scale_y`` are the exact resize factors per axis (they differ by rounding of the
    resized size), ``pad_x``/``pad_y`` the left/top padding in input pixels, ``frame_wh`` the
    original (width, height).
    """

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    frame_wh: tuple[int, int]

    @property
    def resized_wh(self) -> tuple[int, int]:
        """(width, height) the frame is resized to inside the input."""
        frame_w, frame_h = self.frame_wh
        return round(frame_w * self.scale_x), round(frame_h * self.scale_y)


def letterbox_params(frame_wh: tuple[int, int], input_wh: tuple[int, int]) -> LetterboxParams:
    """Placement of a (width, height) frame in a (width, height) input."""
    frame_w, frame_h = frame_wh
    input_w, input_h = input_wh
    scale = min(input_w / frame_w, input_h / frame_h)
    resized_w = min(input_w, max(1, round(frame_w * scale)))
    resized_h = min(input_h, max(1, round(frame_h * scale)))
    return LetterboxParams(
        scale_x=resized_w / frame_w,
        scale_y=resized_h / frame_h,
        pad_x=(input_w - resized_w) // 2,
        pad_y=(input_h - resized_h) // 2,
        frame_wh=(frame_w, frame_h),
    )


def letterbox_into(
    frame: np.ndarray,
    dst: np.ndarray,
    color_order: str = "bgr",
    scratch_u8: np.ndarray | None = None,
) -> LetterboxParams:
    """Write ``frame`` (uint8 H×W×3) letterboxed, as RGB, into ``dst`` (H×W×3, uint8/int8/float32).

    uint8 and int8 destinations are written in place with no intermediate image. A float32
    destination (pixel/255) needs a uint8 staging image: pass ``scratch_u8`` (same H×W×3) to
    reuse one across frames.
    """
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be uint8 with shape (h, w, 3), received {frame.dtype} {frame.shape}")
    if dst.ndim != 3 or dst.shape[2] != 3:
        raise ValueError(f"dst must have shape (H, W, 3), received {dst.shape}")
    if color_order not in COLOR_ORDERS:
        raise ValueError(f"color_order must be one of {COLOR_ORDERS}, received {color_order!r}")
    input_h, input_w = dst.shape[:2]
    frame_h, frame_w = frame.shape[:2]
    params = letterbox_params((frame_w, frame_h), (input_w, input_h))

    if dst.dtype == np.float32:
        if scratch_u8 is None:
            scratch_u8 = np.empty(dst.shape, np.uint8)
        elif scratch_u8.shape != dst.shape or scratch_u8.dtype != np.uint8:
            raise ValueError(f"scratch_u8 must be uint8 {dst.shape}, received {scratch_u8.dtype} {scratch_u8.shape}")
        canvas = scratch_u8
    elif dst.dtype in (np.uint8, np.int8):
        canvas = dst.view(np.uint8)
    else:
        raise ValueError(f"dst dtype must be uint8, int8 or float32, received {dst.dtype}")

    # int8: the padding is written already flipped, and only the picture area is flipped after
    pad = PAD_VALUE ^ INT8_FLIP if dst.dtype == np.int8 else PAD_VALUE
    region = _place(frame, canvas, params, color_order, pad)

    if dst.dtype == np.int8:
        np.bitwise_xor(region, INT8_FLIP, out=region)
    elif dst.dtype == np.float32:
        np.divide(canvas, np.float32(PIXEL_MAX), out=dst, dtype=np.float32)
    return params


def _place(frame: np.ndarray, canvas: np.ndarray, params: LetterboxParams, color_order: str, pad: int) -> np.ndarray:
    """Resize into the centre of ``canvas`` (uint8), pad the borders, convert to RGB; the picture area."""
    resized_w, resized_h = params.resized_wh
    x0, y0 = params.pad_x, params.pad_y
    x1, y1 = x0 + resized_w, y0 + resized_h
    canvas[:y0] = pad
    canvas[y1:] = pad
    canvas[y0:y1, :x0] = pad
    canvas[y0:y1, x1:] = pad
    region = canvas[y0:y1, x0:x1]
    if (resized_w, resized_h) == params.frame_wh:
        region[...] = frame
    else:
        written = cv2.resize(frame, (resized_w, resized_h), dst=region, interpolation=cv2.INTER_LINEAR)
        if not np.may_share_memory(written, canvas):  # OpenCV fell back to a new array
            region[...] = written
    if color_order == "bgr":
        converted = cv2.cvtColor(region, cv2.COLOR_BGR2RGB, dst=region)
        if not np.may_share_memory(converted, canvas):
            region[...] = converted
    return region


def boxes_to_frame(xyxy: np.ndarray, params: LetterboxParams) -> np.ndarray:
    """Map (n, 4) xyxy boxes from input pixels to frame pixels, clipped to the frame."""
    frame_w, frame_h = params.frame_wh
    pad = np.array([params.pad_x, params.pad_y] * 2, np.float32)
    scale = np.array([params.scale_x, params.scale_y] * 2, np.float32)
    out = np.subtract(xyxy, pad, dtype=np.float32)
    out /= scale
    np.maximum(out, 0, out=out)
    return np.minimum(out, np.array([frame_w, frame_h] * 2, np.float32), out=out)


def boxes_to_input(xyxy: np.ndarray, params: LetterboxParams) -> np.ndarray:
    """Map (n, 4) xyxy boxes from frame pixels to input pixels (the forward of ``boxes_to_frame``)."""
    out = np.empty_like(xyxy, dtype=np.float32)
    out[:, 0::2] = xyxy[:, 0::2] * params.scale_x + params.pad_x
    out[:, 1::2] = xyxy[:, 1::2] * params.scale_y + params.pad_y
    return out
