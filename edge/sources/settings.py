"""What to read frames from: a camera or a source, when a silent live source counts as lost, and the
largest image file accepted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from edge.fields import check_fields, setting
from edge.sources.images import DEFAULT_MAX_PIXELS, LIMIT_SETTING

DEFAULT_STALL_TIMEOUT_S = 10.0
MAX_STALL_TIMEOUT_S = 3600.0
MAX_IMAGE_PIXELS = 1_000_000_000  # a gigapixel: 3 GB decoded, past what any device here holds


@dataclass(frozen=True)
class SourceSettings:
    TITLE: ClassVar[str] = "input"
    ONE_OF: ClassVar[tuple[tuple[str, ...], ...]] = (("camera", "source"),)

    camera: str | None = setting(None, help="a V4L2 camera (0, /dev/video0) or a Raspberry Pi camera module (picam, picam:1)",
                                 metavar="CAM", example="picam", note="Set exactly one of `camera` and `source`.")
    source: str | None = setting(None, help="an image, a folder of images, a glob ('dir/*.jpg'), a video file "
                                 "or a stream URL (rtsp://, http(s)://)", metavar="SRC",
                                 example="rtsp://192.168.1.20:554/stream1")
    stall_timeout: float = setting(DEFAULT_STALL_TIMEOUT_S, help="a camera or stream silent this long (seconds) is reopened",
                                   metavar="S", low=0.0, low_open=True, high=MAX_STALL_TIMEOUT_S)
    max_image_pixels: int = setting(DEFAULT_MAX_PIXELS, key=LIMIT_SETTING, flag=LIMIT_SETTING, metavar="N", low=1,
                                    high=MAX_IMAGE_PIXELS,
                                    help="largest image file accepted, in pixels (width x height), read from its header "
                                         "before decoding; a larger one is skipped with a warning",
                                    note="A small file can declare a huge picture: decoding 25000x25000 takes 1.9 GB.")

    def __post_init__(self) -> None:
        check_fields(self)
