"""OpenCV sources: video files, V4L2 cameras (``--camera 0``) and RTSP/HTTP streams (FFMPEG backend)."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import cv2

from edge.errors import EdgeError
from edge.redact import redact_url
from edge.sources.base import CorruptFrame, Grab, SourceLost, SourceUnavailable, check_image

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
MS_PER_S = 1000
CAMERA_BUFFER_FRAMES = 1  # V4L2 queues several buffers by default: each adds a frame of latency
# RTSP over TCP survives lossy Wi-Fi; UDP smears the picture when packets drop.
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
RTSP_FFMPEG_OPTIONS = "rtsp_transport;tcp"
DEVICE_PATTERN = re.compile(r"(?:/dev/video)?(\d+)")
# A failed grab before a file's declared end is a damaged stretch, not the end: FFmpeg decodes the
# frames after it. This many failures in a row, and the rest of the file is taken as lost.
GRAB_RETRIES = 25
# A file whose frames stop this far before its declared count is reported as truncated: at least
# END_SLACK_FRAMES, or END_SLACK_FRACTION of the count (some containers only estimate it).
END_SLACK_FRAMES = 2
END_SLACK_FRACTION = 0.01

log = logging.getLogger(__name__)


def is_stream_url(text: str) -> bool:
    return urlsplit(text).scheme.lower() in STREAM_SCHEMES and "://" in text


def _frame_hw(capture: cv2.VideoCapture) -> tuple[int, int] | None:
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    return (height, width) if height > 0 and width > 0 else None


def _fps(capture: cv2.VideoCapture) -> float | None:
    fps = capture.get(cv2.CAP_PROP_FPS)
    return float(fps) if fps and fps > 0 else None


class VideoFileSource:
    """A video file, frame by frame; the end of the file is the end of the source.

    A damaged stretch (grabs failing before the frame count the header declares) is skipped and
    counted as corrupt frames; a file that stops well short of its declared count is reported once.
    """

    live = False

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = str(self.path)
        self.fps: float | None = None
        self._capture: cv2.VideoCapture | None = None
        self._hw: tuple[int, int] | None = None
        self._declared: int | None = None  # frame count from the header
        self._passed = 0  # frames of this pass read or lost so far
        self._after_damage: Grab | None = None  # the frame that ended a damaged stretch, handed out next
        self._short_reported = False

    def open(self) -> None:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise EdgeError(f"cannot open {self.path} as a video; pass an image, a folder of images, a video file or a stream URL")
        self._capture, self.fps, self._hw = capture, _fps(capture), _frame_hw(capture)
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self._declared = declared if declared > 0 else None
        self._passed = 0
        self._after_damage = None

    def read(self) -> Grab | None:
        if self._capture is None:
            raise SourceLost("not open")
        if self._after_damage is not None:
            grab, self._after_damage = self._after_damage, None
            return grab
        failed = 0
        while not self._capture.grab():
            if not self._before_declared_end(failed) or failed >= GRAB_RETRIES:
                self._report_short_end()
                return None
            failed += 1
        self._passed += failed + 1
        try:
            grab = self._retrieve()
        except CorruptFrame as exc:
            raise CorruptFrame(str(exc), frames=failed + 1) from None
        if failed:
            self._after_damage = grab
            raise CorruptFrame(f"{failed} undecodable frame{'s' if failed > 1 else ''} before "
                               f"{grab.position_ms:.0f} ms", frames=failed)
        return grab

    def _retrieve(self) -> Grab:
        grabbed_at = time.time()
        position_ms = float(self._capture.get(cv2.CAP_PROP_POS_MSEC))
        ok, image = self._capture.retrieve()
        if not ok:
            raise CorruptFrame(f"undecodable frame at {position_ms:.0f} ms")
        return Grab(check_image(image, self._hw), grabbed_at, position_ms)

    def _before_declared_end(self, failed: int) -> bool:
        if self._declared is None:
            return False
        slack = max(END_SLACK_FRAMES, END_SLACK_FRACTION * self._declared)
        return self._passed + failed < self._declared - slack

    def _report_short_end(self) -> None:
        if self._before_declared_end(0) and not self._short_reported:
            self._short_reported = True
            log.warning("%s ended after %d of the %d frames its header declares: the rest is truncated or "
                        "undecodable", self.path, self._passed, self._declared)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class _LiveCapture:
    """Shared by cameras and streams: a read that returns nothing means the source is lost."""

    live = True

    def __init__(self, name: str, stall_timeout_s: float):
        self.name = name
        self.stall_timeout_s = stall_timeout_s
        self.fps: float | None = None
        self._capture: cv2.VideoCapture | None = None
        self._hw: tuple[int, int] | None = None

    def _opened(self, capture: cv2.VideoCapture) -> None:
        self._capture, self.fps, self._hw = capture, _fps(capture), _frame_hw(capture)

    def read(self) -> Grab:
        if self._capture is None:
            raise SourceLost("not open")
        if not self._capture.grab():
            raise SourceLost("no frame (device or stream closed, or read timed out)")
        grabbed_at = time.time()
        ok, image = self._capture.retrieve()
        if not ok:
            raise CorruptFrame("frame could not be decoded")
        if self._hw is None and image is not None and getattr(image, "ndim", 0) == 3:
            self._hw = image.shape[:2]  # some backends report no size until the first frame
        return Grab(check_image(image, self._hw), grabbed_at)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class CameraSource(_LiveCapture):
    """A V4L2 camera by index (``0``) or device path (``/dev/video0``)."""

    def __init__(self, spec: str, stall_timeout_s: float = 10.0):
        match = DEVICE_PATTERN.fullmatch(spec)
        if match is None:
            raise EdgeError(f"--camera {spec!r}: expected a camera index (0), a device (/dev/video0), picam or picam:N")
        self.index = int(match.group(1))
        super().__init__(f"camera{self.index}", stall_timeout_s)

    def open(self) -> None:
        device = Path(f"/dev/video{self.index}")
        if sys.platform.startswith("linux") and not device.exists():
            raise SourceUnavailable(f"camera {self.index}: {device} does not exist; list cameras with `v4l2-ctl --list-devices`"
                                    " (a Raspberry Pi camera module is --camera picam)")
        backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        capture = cv2.VideoCapture(self.index, backend)
        if not capture.isOpened():
            capture.release()
            raise SourceUnavailable(f"cannot open camera {self.index} ({device}): busy, no permission (group video) "
                                    "or not a capture device")
        capture.set(cv2.CAP_PROP_BUFFERSIZE, CAMERA_BUFFER_FRAMES)
        self._opened(capture)


class StreamSource(_LiveCapture):
    """An RTSP or HTTP(S) stream (MJPEG, HLS, ...) through OpenCV's FFMPEG backend.

    Open and read time out after the stall timeout, so a silent camera shows as a failed read
    instead of a read that never returns.
    """

    def __init__(self, url: str, stall_timeout_s: float = 10.0):
        parts = urlsplit(url)
        if not parts.hostname:
            raise EdgeError(f"stream URL {redact_url(url)} has no host; expected e.g. rtsp://HOST:554/PATH")
        self.url = url
        super().__init__(redact_url(url), stall_timeout_s)

    def open(self) -> None:
        if urlsplit(self.url).scheme.lower().startswith("rtsp"):
            os.environ.setdefault(FFMPEG_OPTIONS_ENV, RTSP_FFMPEG_OPTIONS)
        timeout_ms = int(self.stall_timeout_s * MS_PER_S)
        capture = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms])
        if not capture.isOpened():
            capture.release()
            raise SourceUnavailable(f"cannot open stream {self.name}: unreachable, refused, or not a video stream")
        self._opened(capture)
