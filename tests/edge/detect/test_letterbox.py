"""Letterbox placement, pixel values written into the input buffer, and the inverse box mapping."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.detect.letterbox import PAD_VALUE, boxes_to_frame, boxes_to_input, letterbox_into, letterbox_params

# (frame width, frame height), (input width, input height)
SIZES = [
    pytest.param((810, 1080), (320, 320), id="portrait"),
    pytest.param((1280, 720), (320, 320), id="landscape"),
    pytest.param((517, 333), (320, 320), id="odd-landscape"),
    pytest.param((333, 517), (320, 320), id="odd-portrait"),
    pytest.param((101, 99), (320, 256), id="odd-upscale-non-square-input"),
    pytest.param((320, 320), (320, 320), id="same-size"),
    pytest.param((640, 480), (256, 320), id="tall-input"),
]


def reference_letterbox(frame_bgr: np.ndarray, input_wh: tuple[int, int]) -> np.ndarray:
    """The obvious way, with copies: resize, pad, convert to RGB."""
    params = letterbox_params((frame_bgr.shape[1], frame_bgr.shape[0]), input_wh)
    resized_w = round(frame_bgr.shape[1] * params.scale_x)
    resized_h = round(frame_bgr.shape[0] * params.scale_y)
    resized = cv2.resize(frame_bgr, (resized_w, resized_h), interpolation=cv2.INTER_LINEAR)
    out = np.full((input_wh[1], input_wh[0], 3), PAD_VALUE, np.uint8)
    out[params.pad_y:params.pad_y + resized_h, params.pad_x:params.pad_x + resized_w] = resized[..., ::-1]
    return out


def random_frame(frame_wh, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frame_wh[1], frame_wh[0], 3), dtype=np.uint8)


@pytest.mark.parametrize("frame_wh, input_wh", SIZES)
def test_letterbox_matches_reference_for_every_dtype(frame_wh, input_wh):
    frame = random_frame(frame_wh)
    expected = reference_letterbox(frame, input_wh)
    shape = (input_wh[1], input_wh[0], 3)
    as_uint8 = np.zeros(shape, np.uint8)
    as_int8 = np.zeros(shape, np.int8)
    as_float = np.zeros(shape, np.float32)
    letterbox_into(frame, as_uint8)
    letterbox_into(frame, as_int8)
    letterbox_into(frame, as_float)
    np.testing.assert_array_equal(as_uint8, expected)
    np.testing.assert_array_equal(as_int8, expected.astype(np.int16) - 128)
    np.testing.assert_array_equal(as_float, expected.astype(np.float32) / np.float32(255))
    # the int8 input is exactly pixel - 128 of the float input
    np.testing.assert_array_equal(as_int8.astype(np.int16), np.rint(as_float * 255).astype(np.int16) - 128)


@pytest.mark.parametrize("frame_wh, input_wh", SIZES)
def test_padding_is_centred(frame_wh, input_wh):
    params = letterbox_params(frame_wh, input_wh)
    resized_w = round(frame_wh[0] * params.scale_x)
    resized_h = round(frame_wh[1] * params.scale_y)
    right = input_wh[0] - resized_w - params.pad_x
    bottom = input_wh[1] - resized_h - params.pad_y
    assert 0 <= right - params.pad_x <= 1
    assert 0 <= bottom - params.pad_y <= 1
    assert resized_w == input_wh[0] or resized_h == input_wh[1]  # fills one side
    assert abs(params.scale_x - params.scale_y) * max(frame_wh) <= 1  # aspect kept within a pixel


@pytest.mark.parametrize("frame_wh, input_wh", SIZES)
def test_boxes_round_trip(frame_wh, input_wh):
    params = letterbox_params(frame_wh, input_wh)
    rng = np.random.default_rng(1)
    corner = rng.uniform(0, 1, (50, 2)) * np.array(frame_wh) * 0.5
    boxes = np.concatenate([corner, corner + rng.uniform(0.01, 1, (50, 2)) * np.array(frame_wh) * 0.5], axis=1)
    back = boxes_to_frame(boxes_to_input(boxes.astype(np.float32), params), params)
    np.testing.assert_allclose(back, boxes, atol=1e-2)


@pytest.mark.parametrize("frame_wh, input_wh", SIZES)
def test_drawn_rectangle_maps_back_within_a_pixel(frame_wh, input_wh):
    """A white block in the frame, found in the letterboxed input, maps back onto itself."""
    frame_w, frame_h = frame_wh
    box = np.array([[frame_w * 0.2, frame_h * 0.3, frame_w * 0.7, frame_h * 0.9]]).round()
    frame = np.zeros((frame_h, frame_w, 3), np.uint8)
    x1, y1, x2, y2 = box[0].astype(int)
    frame[y1:y2, x1:x2] = 255
    dst = np.zeros((input_wh[1], input_wh[0], 3), np.uint8)
    params = letterbox_into(frame, dst)
    ys, xs = np.nonzero(dst[..., 0] > 127)  # edge pixels interpolate to ~half
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    np.testing.assert_allclose(found, boxes_to_input(box, params), atol=1.0)  # within 1 input pixel
    input_px_in_frame = max(1 / params.scale_x, 1 / params.scale_y)
    np.testing.assert_allclose(boxes_to_frame(found, params), box, atol=max(1.0, input_px_in_frame))


def test_boxes_outside_frame_are_clipped():
    params = letterbox_params((640, 480), (320, 320))
    out = boxes_to_frame(np.array([[-50, -50, 400, 400]], np.float32), params)
    assert out.tolist() == [[0, 0, 640, 480]]


def test_bgr_becomes_rgb_and_rgb_stays():
    blue_bgr = np.zeros((10, 10, 3), np.uint8)
    blue_bgr[..., 0] = 255
    dst = np.zeros((10, 10, 3), np.uint8)
    letterbox_into(blue_bgr, dst, color_order="bgr")
    assert dst[5, 5].tolist() == [0, 0, 255]
    letterbox_into(blue_bgr, dst, color_order="rgb")
    assert dst[5, 5].tolist() == [255, 0, 0]


def test_writes_into_the_given_buffer_and_reuses_scratch():
    frame = random_frame((200, 100))
    dst = np.zeros((64, 64, 3), np.float32)
    scratch = np.zeros((64, 64, 3), np.uint8)
    letterbox_into(frame, dst, scratch_u8=scratch)
    np.testing.assert_array_equal(dst, scratch / np.float32(255))
    assert scratch[0, 0].tolist() == [PAD_VALUE] * 3  # the pad row above the image


@pytest.mark.parametrize(
    "frame, dst, message",
    [
        (np.zeros((4, 4), np.uint8), np.zeros((8, 8, 3), np.uint8), "frame must be uint8 with shape"),
        (np.zeros((4, 4, 3), np.float32), np.zeros((8, 8, 3), np.uint8), "frame must be uint8 with shape"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((8, 8, 3), np.int16), "dst dtype"),
    ],
)
def test_bad_arrays_are_rejected_with_shapes(frame, dst, message):
    with pytest.raises(ValueError, match=message):
        letterbox_into(frame, dst)
