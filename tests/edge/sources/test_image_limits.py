"""Image files: the size read from each format's header, a pixel limit checked before decoding, one decode each.

The oversized image is a real, valid PNG (25000x25000, 1-bit grey, 80 kB): decoding it would take
about 1.9 GB for the BGR frame alone, and minutes.
"""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import EdgeError
from edge.fields import InvalidSetting
from edge.sources.image_header import image_size_wh
from edge.sources.images import DEFAULT_MAX_PIXELS, ImageListSource
from edge.sources.settings import SourceSettings
from edge.sources import CorruptFrame

HUGE_SIDE = 25_000
BUS_WH = (810, 1080)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def huge_png(path: Path, side: int = HUGE_SIDE) -> Path:
    """A valid all-black 1-bit PNG of side x side pixels, compressed row block by row block."""
    row = b"\x00" + bytes((side + 7) // 8)  # filter type 0, then the packed bits
    block_rows = 1000
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row * block_rows) for _ in range(side // block_rows))
    idat += packer.compress(row * (side % block_rows)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))
    return path


@pytest.fixture
def photo(data_dir) -> np.ndarray:
    return cv2.imread(str(data_dir / "data" / "photos" / "bus.jpg"))


@pytest.mark.parametrize("suffix, params", [
    (".png", []), (".jpg", []), (".bmp", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]), (".tiff", []),
], ids=["png", "jpeg", "bmp", "webp-vp8", "webp-vp8l", "tiff"])
@pytest.mark.parametrize("size_wh", [(517, 333), (64, 1000)])
def test_the_header_gives_the_size_the_decoder_finds(photo, suffix, params, size_wh):
    image = cv2.resize(photo, size_wh)
    ok, encoded = cv2.imencode(suffix, image, params)
    assert ok
    data = encoded.tobytes()
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    assert image_size_wh(data) == (decoded.shape[1], decoded.shape[0]) == size_wh


def test_headers_written_by_other_encoders(photo):
    ok, bmp = cv2.imencode(".bmp", cv2.resize(photo, (40, 30)))
    top_down = bytearray(bmp.tobytes())
    top_down[22:26] = struct.pack("<i", -30)  # rows stored top-down: a negative height
    core = b"BM" + bytes(12) + struct.pack("<IHHHH", 12, 300, 200, 1, 24)  # OS/2 header, 16-bit sizes
    vp8x = b"RIFF" + bytes(4) + b"WEBPVP8X" + struct.pack("<I", 10) + bytes(4) + (7999).to_bytes(3, "little") + (5999).to_bytes(3, "little")
    big_endian_tiff = b"MM\x00*" + struct.pack(">IH", 8, 2) + struct.pack(">HHIHH", 256, 3, 1, 640, 0) + struct.pack(">HHII", 257, 4, 1, 480)
    jpeg_fill = b"\xff\xd8\xff\xff\xe0" + struct.pack(">H", 4) + b"JF" + b"\xff\xc2" + struct.pack(">HBHH", 11, 8, 90, 160)
    assert image_size_wh(bytes(top_down)) == (40, 30)
    assert image_size_wh(core) == (300, 200)
    assert image_size_wh(vp8x) == (8000, 6000)
    assert image_size_wh(big_endian_tiff) == (640, 480)
    assert image_size_wh(jpeg_fill) == (160, 90)  # progressive SOF2 after a fill byte


@pytest.mark.parametrize("data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n\x00\x00", b"\xff\xd8\xff\xda\x00\x02",
                                  b"P6 25000 25000 255\n"], ids=["empty", "text", "cut-png", "jpeg-without-sof", "ppm"])
def test_unknown_or_cut_headers_give_no_size(data):
    assert image_size_wh(data) is None


def test_an_oversized_image_in_a_folder_is_skipped_before_decoding(tmp_path, data_dir, caplog):
    huge = huge_png(tmp_path / "a_huge.png")
    assert huge.stat().st_size < 200_000
    shutil.copy(data_dir / "data" / "photos" / "bus.jpg", tmp_path / "b_bus.jpg")
    source = ImageListSource(str(tmp_path))
    source.open()
    with caplog.at_level(logging.WARNING):
        with pytest.raises(CorruptFrame):
            source.read()
    bus = source.read()
    assert bus.image.shape == (BUS_WH[1], BUS_WH[0], 3) and source.read() is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"skipping oversized image {huge}: 25000x25000 = 625,000,000 pixels, over the limit "
                        "of 50,000,000 (max-image-pixels); resize it or raise the limit"]


def test_a_single_oversized_image_is_one_line_error(tmp_path):
    huge = huge_png(tmp_path / "huge.png")
    with pytest.raises(EdgeError) as error:
        ImageListSource(str(huge)).open()
    assert str(error.value).startswith(f"cannot use oversized image {huge}: 25000x25000") and "\n" not in str(error.value)


def test_edge_detect_refuses_an_oversized_image_in_one_line(tmp_path, model_dir):
    huge = huge_png(tmp_path / "huge.png")
    result = subprocess.run([sys.executable, "-m", "edge.cli", "--model", str(model_dir / "yolov5n_320_int8.tflite"),
                             "--source", str(huge)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("edge-detect: error:")]
    assert errors == [f"edge-detect: error: cannot use oversized image {huge}: 25000x25000 = 625,000,000 pixels, over "
                      "the limit of 50,000,000 (max-image-pixels); resize it or raise the limit"], result.stderr


@pytest.mark.parametrize("max_pixels, accepted", [(BUS_WH[0] * BUS_WH[1], True), (BUS_WH[0] * BUS_WH[1] - 1, False)])
def test_the_limit_is_a_setting(data_dir, max_pixels, accepted):
    source = ImageListSource(str(data_dir / "data" / "photos" / "*.jpg"), max_pixels)
    source.open()
    if accepted:
        assert source.read().image.shape[:2] == (BUS_WH[1], BUS_WH[0])
    else:
        with pytest.raises(CorruptFrame, match="810x1080 = 874,800 pixels, over the limit of 874,799"):
            source.read()


def test_the_limit_is_checked_like_every_setting():
    assert SourceSettings(camera="0").max_image_pixels == DEFAULT_MAX_PIXELS
    with pytest.raises(InvalidSetting, match="max_image_pixels: must be between 1 and 1000000000, received 0"):
        SourceSettings(camera="0", max_image_pixels=0)


def test_the_limit_is_an_option_of_edge_detect(model_dir, data_dir):
    bus = data_dir / "data" / "photos" / "bus.jpg"
    result = subprocess.run([sys.executable, "-m", "edge.cli", "--model", str(model_dir / "yolov5n_320_int8.tflite"),
                             "--source", str(bus), "--max-image-pixels", "1000"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert f"edge-detect: error: cannot use oversized image {bus}: 810x1080 = 874,800 pixels, over the limit of 1,000 " \
           "(max-image-pixels); resize it or raise the limit" in result.stderr.splitlines()


@pytest.mark.parametrize("spec, images", [("bus.jpg", 1), ("*.jpg", 2)])
def test_each_image_is_decoded_once(data_dir, monkeypatch, spec, images):
    decoded = []
    real_imdecode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *args: decoded.append(1) or real_imdecode(*args))
    source = ImageListSource(str(data_dir / "data" / "photos" / spec))
    source.open()
    read = 0
    while source.read() is not None:
        read += 1
    assert read == images and len(decoded) == images
