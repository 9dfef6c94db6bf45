"""An image's size read from its header, before anything is decoded.

A 2 MB PNG can declare 25000x25000 pixels: decoding it takes gigabytes and minutes, which on a Pi
ends in the out-of-memory killer. Reading the size first lets the source refuse it. Covers the
formats the image sources accept: PNG, JPEG, BMP, WebP (VP8, VP8L, VP8X) and TIFF. None means the
header is not one of them or is damaged.
"""

from __future__ import annotations

import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_SOS, JPEG_EOI = 0xDA, 0xD9
JPEG_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn and TEM carry no length
BMP_SIGNATURE = b"BM"
BMP_CORE_HEADER_BYTES = 12  # OS/2 1.x: 16-bit sizes
TIFF_LITTLE, TIFF_BIG = b"II*\x00", b"MM\x00*"
TIFF_WIDTH_TAG, TIFF_HEIGHT_TAG = 256, 257
TIFF_SHORT, TIFF_LONG = 3, 4
TIFF_ENTRY_BYTES = 12
VP8_START_CODE = b"\x9d\x01\x2a"
VP8L_SIGNATURE = 0x2F
WEBP_SIZE_MASK = 0x3FFF
HEADER_BYTES = 64 * 1024  # enough for any of them unless a JPEG carries huge EXIF before its SOF


def image_size_wh(data: bytes) -> tuple[int, int] | None:
    """(width, height) declared by the header in ``data`` (the file's first bytes), or None."""
    try:
        if data.startswith(PNG_SIGNATURE):
            size = _png(data)
        elif data.startswith(JPEG_SOI):
            size = _jpeg(data)
        elif data.startswith(BMP_SIGNATURE):
            size = _bmp(data)
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            size = _webp(data)
        elif data[:4] in (TIFF_LITTLE, TIFF_BIG):
            size = _tiff(data)
        else:
            return None
    except (struct.error, IndexError):
        return None  # a header cut short
    return size if size is not None and size[0] > 0 and size[1] > 0 else None


def _png(data: bytes) -> tuple[int, int] | None:
    if data[12:16] != b"IHDR":
        return None
    return struct.unpack_from(">II", data, 16)


def _jpeg(data: bytes) -> tuple[int, int] | None:
    pos = len(JPEG_SOI)
    while pos < len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (JPEG_SOS, JPEG_EOI):
            return None  # image data before any frame header
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in JPEG_SOF:
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return width, height
        pos += 2 + length
    return None


def _bmp(data: bytes) -> tuple[int, int] | None:
    (header_bytes,) = struct.unpack_from("<I", data, 14)
    if header_bytes == BMP_CORE_HEADER_BYTES:
        return struct.unpack_from("<HH", data, 18)
    width, height = struct.unpack_from("<ii", data, 18)
    return abs(width), abs(height)  # negative height: rows stored top-down


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != VP8_START_CODE:
            return None
        width, height = struct.unpack_from("<HH", data, 26)
        return width & WEBP_SIZE_MASK, height & WEBP_SIZE_MASK
    if chunk == b"VP8L":
        if data[20] != VP8L_SIGNATURE:
            return None
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & WEBP_SIZE_MASK) + 1, ((bits >> 14) & WEBP_SIZE_MASK) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def _tiff(data: bytes) -> tuple[int, int] | None:
    order = "<" if data.startswith(TIFF_LITTLE) else ">"
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    (entries,) = struct.unpack_from(order + "H", data, ifd)
    found: dict[int, int] = {}
    for i in range(entries):
        tag, kind, _count = struct.unpack_from(order + "HHI", data, ifd + 2 + i * TIFF_ENTRY_BYTES)
        if tag in (TIFF_WIDTH_TAG, TIFF_HEIGHT_TAG) and kind in (TIFF_SHORT, TIFF_LONG):
            value_at = ifd + 2 + i * TIFF_ENTRY_BYTES + 8
            (found[tag],) = struct.unpack_from(order + ("H" if kind == TIFF_SHORT else "I"), data, value_at)
    if TIFF_WIDTH_TAG not in found or TIFF_HEIGHT_TAG not in found:
        return None
    return found[TIFF_WIDTH_TAG], found[TIFF_HEIGHT_TAG]
