"""Sources without hardware: which backend a spec opens, picamera2's buffers, image lists, bad frames."""

from __future__ import annotations

import builtins
import shutil

import cv2
import numpy as np
import pytest

from edge.errors import EdgeError
from edge.sources import CorruptFrame, check_image, open_source
from edge.sources.images import ImageListSource
from edge.redact import redact_url
from edge.sources.opencv import CameraSource, StreamSource, VideoFileSource
from edge.sources.picam import (INSTALL_HINT, RGB888, YUV420, PicameraSource, PicamSpec, import_picamera2,
                                    lores_size_wh, lores_to_bgr, parse_picam_spec, yuv420_to_bgr)


@pytest.fixture
def photo(data_dir):
    return cv2.imread(str(data_dir / "data" / "photos" / "bus.jpg"))


@pytest.mark.parametrize("kwargs, kind", [
    ({"camera": "0"}, CameraSource),
    ({"camera": "/dev/video2"}, CameraSource),
    ({"camera": "picam"}, PicameraSource),
    ({"camera": "picam:1"}, PicameraSource),
    ({"source": "rtsp://user:pw@10.0.0.5:554/stream1"}, StreamSource),
    ({"source": "http://10.0.0.5/mjpg/video.mjpg"}, StreamSource),
    ({"source": "{videos}/car-detection.mp4"}, VideoFileSource),
    ({"source": "{photos}"}, ImageListSource),
    ({"source": "{photos}/*.jpg"}, ImageListSource),
    ({"source": "{photos}/bus.jpg"}, ImageListSource),
])
def test_each_spec_opens_its_backend(data_dir, kwargs, kind):
    folders = {"videos": data_dir / "data" / "video", "photos": data_dir / "data" / "photos"}
    kwargs = {key: value.format(**folders) for key, value in kwargs.items()}
    assert isinstance(open_source(**kwargs), kind)


@pytest.mark.parametrize("kwargs, fragment", [
    ({}, "exactly one of --camera"),
    ({"camera": "0", "source": "a.mp4"}, "exactly one of --camera"),
    ({"camera": "front"}, "expected a camera index"),
    ({"camera": "picam:x"}, "picam:N"),
    ({"source": "ftp://host/clip.mp4"}, "unsupported URL scheme in ftp://"),
    ({"source": "rtsp:///nohost"}, "has no host"),
    ({"source": "/nonexistent/clip.mp4"}, "source not found"),
])
def test_bad_specs_are_named(kwargs, fragment):
    with pytest.raises(EdgeError, match=fragment):
        open_source(**kwargs)


def test_stream_names_never_show_the_password():
    assert redact_url("rtsp://admin:s3cret@cam.local:554/h264") == "rtsp://admin:***@cam.local:554/h264"
    assert "s3cret" not in open_source(source="rtsp://admin:s3cret@cam.local/h264").name
    assert redact_url("http://cam.local/video.mjpg") == "http://cam.local/video.mjpg"


@pytest.mark.parametrize("image, expected_hw, fragment", [
    (None, None, "empty"),
    (np.zeros((0, 0, 3), np.uint8), None, "empty"),
    (np.zeros((4, 4), np.uint8), None, "expected \\(H, W, 3\\) uint8"),
    (np.zeros((4, 4, 3), np.float32), None, "expected \\(H, W, 3\\) uint8"),
    (np.zeros((4, 6, 3), np.uint8), (4, 4), "frame of 6x4, the stream is 4x4"),
])
def test_bad_frames_are_corrupt(image, expected_hw, fragment):
    with pytest.raises(CorruptFrame, match=fragment):
        check_image(image, expected_hw)


def test_image_list_skips_an_unreadable_file_and_names_it(tmp_path, data_dir, caplog):
    shutil.copy(data_dir / "data" / "photos" / "bus.jpg", tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    shutil.copy(data_dir / "data" / "photos" / "zidane.jpg", tmp_path / "c.jpg")
    source = ImageListSource(str(tmp_path / "*.jpg"))
    source.open()
    first = source.read()
    with pytest.raises(CorruptFrame):
        source.read()
    third = source.read()
    assert source.read() is None
    assert first.image.shape == (1080, 810, 3) and third.image.shape[2] == 3
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [f"skipping unreadable image {tmp_path / 'b.jpg'}"]


# --- picamera2, without the library: the buffers it hands over and the message when it is missing


def padded_i420(bgr: np.ndarray, stride: int) -> np.ndarray:
    """The (H*3/2, stride) array picamera2 returns for a YUV420 stream whose rows are padded to ``stride``."""
    height, width = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    luma, chroma = i420[:height], i420[height:].reshape(height, width // 2)  # U rows then V rows, w/2 bytes each
    padded = np.full((height * 3 // 2, stride), 77, np.uint8)  # padding holds junk, as in a real buffer
    padded[:height, :width] = luma
    chroma_rows = padded[height:].reshape(height, stride // 2)
    chroma_rows[:, : width // 2] = chroma
    return padded


@pytest.mark.parametrize("size_wh, stride", [((320, 180), 320), ((320, 180), 384), ((300, 170), 320), ((256, 144), 512)])
def test_yuv420_with_padded_rows_converts_like_the_unpadded_image(photo, size_wh, stride):
    bgr = cv2.resize(photo, size_wh, interpolation=cv2.INTER_AREA)
    expected = cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), cv2.COLOR_YUV2BGR_I420)
    converted = yuv420_to_bgr(padded_i420(bgr, stride), size_wh)
    assert converted.shape == (size_wh[1], size_wh[0], 3)
    np.testing.assert_array_equal(converted, expected)  # the junk in the padding never reaches the image
    assert np.abs(converted.astype(int) - bgr).mean() < 8  # and it is the picture that went in


def test_cropping_the_whole_array_to_the_width_would_be_wrong(photo):
    """Why chroma is cropped per plane: a naive crop keeps padding bytes inside the U and V planes."""
    bgr = cv2.resize(photo, (320, 180))
    padded = padded_i420(bgr, 384)
    naive = cv2.cvtColor(np.ascontiguousarray(padded[:, :320]), cv2.COLOR_YUV2BGR_I420)
    assert not np.array_equal(naive, yuv420_to_bgr(padded, (320, 180)))


@pytest.mark.parametrize("layout", ["bytes", "pixels"])
def test_rgb888_with_padded_rows_is_cropped(photo, layout):
    bgr = cv2.resize(photo, (300, 170))
    padded = np.zeros((170, 320, 3), np.uint8)
    padded[:, :300] = bgr
    array = padded.reshape(170, 320 * 3) if layout == "bytes" else padded
    out = lores_to_bgr(array, RGB888, (300, 170))
    np.testing.assert_array_equal(out, bgr)
    assert out.flags.c_contiguous and not np.shares_memory(out, array)  # the buffer goes back to libcamera


@pytest.mark.parametrize("array, fmt", [
    (np.zeros((100, 320), np.uint8), YUV420),  # wrong number of rows
    (np.zeros((270, 300), np.uint8), YUV420),  # stride narrower than the image
    (np.zeros((180, 320), np.uint8), RGB888),  # rows too short for 320 RGB pixels
    (np.zeros((180, 320), np.uint8), "XBGR8888"),
])
def test_malformed_camera_buffers_are_corrupt_frames(array, fmt):
    with pytest.raises(CorruptFrame):
        lores_to_bgr(array, fmt, (320, 180))


@pytest.mark.parametrize("main_wh, edge, expected", [
    ((1280, 720), 320, (320, 180)),
    ((1280, 960), 640, (640, 480)),
    ((1280, 720), 2000, (1280, 720)),  # never larger than the main stream
    ((1000, 750), 333, (332, 248)),  # even sides for YUV420
])
def test_lores_size_keeps_the_aspect_and_fits_the_model(main_wh, edge, expected):
    assert lores_size_wh(main_wh, edge) == expected


def test_picam_spec():
    assert parse_picam_spec("picam") == PicamSpec(0)
    assert parse_picam_spec("picam:1") == PicamSpec(1)


def test_missing_picamera2_names_the_package_and_the_venv_flag(monkeypatch):
    real_import = builtins.__import__

    def no_picamera2(name, *args, **kwargs):
        if name == "picamera2" or name.startswith("picamera2."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_picamera2)
    with pytest.raises(EdgeError) as caught:
        import_picamera2()
    message = str(caught.value)
    assert message == INSTALL_HINT and "\n" not in message
    assert "sudo apt install python3-picamera2" in message and "--system-site-packages" in message
    with pytest.raises(EdgeError, match="python3-picamera2"):
        PicameraSource(PicamSpec()).open()


class FakeRequest:
    def __init__(self, array, fail=False):
        self.array, self.fail, self.released = array, fail, False

    def make_array(self, stream):
        assert stream == "lores"
        if self.fail:
            raise RuntimeError("buffer mapping failed")
        return self.array

    def release(self):
        self.released = True


class FakeCamera:
    """Just enough of Picamera2 for PicameraSource.read(): capture_request/wait, requests to release."""

    def __init__(self, requests):
        self.requests = list(requests)

    def capture_request(self, wait=None):
        return self.requests.pop(0)

    def wait(self, job, timeout=None):
        return job


def test_every_request_is_released_even_when_reading_it_fails(photo):
    bgr = cv2.resize(photo, (320, 180))
    good, broken = FakeRequest(padded_i420(bgr, 384)), FakeRequest(None, fail=True)
    source = PicameraSource(PicamSpec())
    source._camera, source._format, source._size_wh = FakeCamera([good, broken]), YUV420, (320, 180)
    assert source.read().image.shape == (180, 320, 3)
    with pytest.raises(CorruptFrame, match="buffer mapping failed"):
        source.read()
    assert good.released and broken.released
