"""Raspberry Pi camera modules through picamera2 (libcamera): ``--camera picam`` or ``picam:N``.

The detector gets the camera's low-resolution ("lores") stream, sized for the model, so the ISP
does the downscaling instead of the CPU; the main stream runs beside it because libcamera needs
one. The lores format is YUV420 on a Pi 4 and earlier (VC4: lores cannot be RGB) and RGB888 on a
Pi 5 (PiSP). Rows of a libcamera buffer may be padded to an aligned stride: the array picamera2
returns is then wider than the image and must be cropped, per plane for YUV420.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import cv2
import numpy as np

from edge.errors import EdgeError
from edge.sources.base import CorruptFrame, Grab, SourceLost, SourceUnavailable, check_image

log = logging.getLogger(__name__)

INSTALL_HINT = ("picamera2 is not installed: install it with `sudo apt install python3-picamera2` "
                "(it is not on PyPI in a working form), and create the virtualenv with --system-site-packages "
                "so it can import the system's picamera2 and libcamera")
YUV420 = "YUV420"
RGB888 = "RGB888"  # libcamera's RGB888 is B, G, R in memory: OpenCV's order already
MAIN_SIZE_WH = (1280, 720)  # the main stream only has to exist; its size sets the field of view
DEFAULT_LORES_EDGE = 320
SIZE_ALIGN = 2  # YUV420 halves both axes for chroma: lores sides must be even
CHROMA_PLANES = 2  # U then V


@dataclass(frozen=True)
class PicamSpec:
    camera_num: int = 0
    lores_edge: int = DEFAULT_LORES_EDGE  # longest side of the lores stream, set to the model's input


def parse_picam_spec(text: str) -> PicamSpec:
    if text == "picam":
        return PicamSpec()
    _, _, number = text.partition(":")
    if not number.isdigit():
        raise EdgeError(f"--camera {text!r}: expected picam or picam:N with N the camera number (0, 1)")
    return PicamSpec(int(number))


def import_picamera2():
    """The picamera2 module, or EdgeError with the one line that says how to get it."""
    try:
        import picamera2
    except ImportError:
        raise EdgeError(INSTALL_HINT) from None
    return picamera2


def lores_size_wh(main_wh: tuple[int, int], longest_edge: int) -> tuple[int, int]:
    """The lores size with the main stream's aspect ratio, longest side ``longest_edge``, even sides."""
    main_w, main_h = main_wh
    scale = min(1.0, longest_edge / max(main_w, main_h))
    width = max(SIZE_ALIGN, int(main_w * scale) // SIZE_ALIGN * SIZE_ALIGN)
    height = max(SIZE_ALIGN, int(main_h * scale) // SIZE_ALIGN * SIZE_ALIGN)
    return width, height


def yuv420_to_bgr(array: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """BGR image from a planar YUV420 (I420) buffer of ``size_wh`` whose rows may be padded.

    picamera2 returns YUV420 as a (H*3/2, stride) array: H luma rows of ``stride`` bytes, then the
    U and V planes, whose rows are ``stride/2`` bytes, two to an array row. Cropping the array to
    the width would keep chroma padding, so each plane is cropped on its own.
    """
    width, height = size_wh
    if width % SIZE_ALIGN or height % SIZE_ALIGN:
        raise CorruptFrame(f"YUV420 needs even sides, the stream is {width}x{height}")
    rows, stride = array.shape[:2] if array.ndim >= 2 else (0, 0)
    if array.dtype != np.uint8 or array.ndim != 2 or rows != height * 3 // 2 or stride < width or stride % SIZE_ALIGN:
        raise CorruptFrame(f"YUV420 buffer of shape {array.shape} {array.dtype} for a {width}x{height} image")
    luma = array[:height, :width]
    chroma = array[height:].reshape(CHROMA_PLANES * height // 2, stride // 2)[:, : width // 2]
    i420 = np.empty((height * 3 // 2, width), np.uint8)
    i420[:height] = luma
    i420[height:] = chroma.reshape(height // 2, width)  # U rows then V rows, packed without padding
    return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)


def rgb888_to_bgr(array: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """The (H, W, 3) image from an RGB888 buffer given as (H, stride) bytes or (H, >=W, >=3) pixels."""
    width, height = size_wh
    if array.dtype != np.uint8 or array.shape[0] != height:
        raise CorruptFrame(f"RGB888 buffer of shape {array.shape} {array.dtype} for a {width}x{height} image")
    if array.ndim == 2:
        if array.shape[1] < width * 3:
            raise CorruptFrame(f"RGB888 rows of {array.shape[1]} bytes for a width of {width}")
        array = array[:, : width * 3].reshape(height, width, 3)
    elif array.ndim != 3 or array.shape[1] < width or array.shape[2] < 3:
        raise CorruptFrame(f"RGB888 buffer of shape {array.shape} for a {width}x{height} image")
    return np.array(array[:, :width, :3], order="C")  # a copy: the buffer goes back to libcamera on release


def lores_to_bgr(array: np.ndarray, fmt: str, size_wh: tuple[int, int]) -> np.ndarray:
    if fmt == YUV420:
        return yuv420_to_bgr(array, size_wh)
    if fmt in (RGB888, "BGR888"):
        image = rgb888_to_bgr(array, size_wh)
        return image if fmt == RGB888 else image[..., ::-1].copy()
    raise CorruptFrame(f"unsupported lores format {fmt}")


def is_pisp(picamera2_module) -> bool:
    """True on a Pi 5 (PiSP), False on VC4 boards; picamera2 ≥ 0.3.17 says which."""
    try:
        from picamera2.platform import Platform, get_platform
    except ImportError:
        log.warning("picamera2 does not report the platform; assuming a VC4 board (Pi 4 or earlier): lores in YUV420")
        return False
    return get_platform() == Platform.PISP


class PicameraSource:
    """A camera module's lores stream as BGR frames; every request is released, even on error."""

    live = True

    def __init__(self, spec: PicamSpec, stall_timeout_s: float = 10.0):
        self.spec = spec
        self.stall_timeout_s = stall_timeout_s
        self.name = f"picam{spec.camera_num}"
        self.fps: float | None = None
        self._camera = None
        self._format = YUV420
        self._size_wh = (0, 0)

    def set_lores_edge(self, edge: int) -> None:
        """Size the lores stream for a model of input side ``edge`` (before open)."""
        self.spec = PicamSpec(self.spec.camera_num, edge)

    def open(self) -> None:
        module = import_picamera2()
        self._format = RGB888 if is_pisp(module) else YUV420
        self._size_wh = lores_size_wh(MAIN_SIZE_WH, self.spec.lores_edge)
        try:
            camera = module.Picamera2(self.spec.camera_num)
        except (IndexError, RuntimeError) as exc:
            raise SourceUnavailable(f"camera module {self.spec.camera_num} not found ({exc}); check the ribbon cable and "
                            "`rpicam-hello --list-cameras`") from None
        try:
            config = camera.create_video_configuration(
                main={"size": MAIN_SIZE_WH}, lores={"size": self._size_wh, "format": self._format}, buffer_count=4)
            camera.configure(config)
            camera.start()
        except Exception as exc:  # libcamera raises RuntimeError and others; any of them means "not usable"
            camera.close()
            raise SourceUnavailable(f"cannot start camera module {self.spec.camera_num}: {exc}") from None
        self._camera = camera
        log.info("%s: lores %dx%d %s", self.name, *self._size_wh, self._format)

    def _request(self):
        camera = self._camera
        try:
            job = camera.capture_request(wait=False)
            return camera.wait(job, timeout=self.stall_timeout_s)
        except TypeError:  # picamera2 before the wait/timeout arguments
            return camera.capture_request()

    def read(self) -> Grab:
        if self._camera is None:
            raise SourceLost("not open")
        try:
            request = self._request()
        except TimeoutError:
            raise SourceLost(f"no frame from the camera in {self.stall_timeout_s:g} s") from None
        except Exception as exc:
            raise SourceLost(f"camera error: {exc}") from None
        grabbed_at = time.time()
        try:
            array = request.make_array("lores")
        except Exception as exc:  # a buffer that cannot be mapped is one lost frame, not a lost camera
            raise CorruptFrame(f"cannot read the lores buffer: {exc}") from None
        finally:
            request.release()  # an unreleased request starves libcamera of buffers
        return Grab(check_image(lores_to_bgr(array, self._format, self._size_wh)), grabbed_at)

    def close(self) -> None:
        if self._camera is not None:
            camera, self._camera = self._camera, None
            try:
                camera.stop()
            finally:
                camera.close()
