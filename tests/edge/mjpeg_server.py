"""An MJPEG-over-HTTP camera stand-in: real video frames as multipart/x-mixed-replace JPEGs.

IP cameras serve exactly this. The server can be stopped (listening socket closed and open streams
cut) and started again on the same port, so a test can watch a client lose and regain the stream:

    server = MjpegServer(jpeg_frames(video, count=120), fps=25)
    server.start()            # picks a free loopback port, kept across restarts
    ... server.url ...
    server.stop(); time.sleep(4); server.start()
    server.stop()

    python tests/edge/mjpeg_server.py VIDEO [--port N] [--fps F]   # serve by hand
"""

from __future__ import annotations

import argparse
import http.server
import socket
import threading
import time
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

import cv2

BOUNDARY = "edgeyoloframe"
JPEG_QUALITY = 85
LOOPBACK = "127.0.0.1"
DEFAULT_FPS = 25.0
STREAM_PATH = "/stream.mjpg"


def jpeg_frames(video: str | Path, count: int, step: int = 1, start: int = 0) -> list[bytes]:
    """``count`` JPEG-encoded frames of ``video``, every ``step``-th from ``start`` (encoded once, served many times)."""
    capture = cv2.VideoCapture(str(video))
    frames: list[bytes] = []
    index = 0
    try:
        while len(frames) < count:
            ok, image = capture.read()
            if not ok:
                break
            if index >= start and (index - start) % step == 0:
                ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if ok:
                    frames.append(data.tobytes())
            index += 1
    finally:
        capture.release()
    if not frames:
        raise ValueError(f"no frames decoded from {video}")
    return frames


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


class _Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True  # restart on the same port while old connections sit in TIME_WAIT
    daemon_threads = True


class MjpegServer:
    """Serves ``frames`` in a loop at ``fps`` to every client of ``url``; stop() cuts every stream."""

    def __init__(self, frames: Sequence[bytes], fps: float = DEFAULT_FPS, port: int | None = None):
        self.frames = list(frames)
        self.period_s = 1.0 / fps
        self.port = port or free_port()
        self.frames_sent = 0
        self.connections = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{STREAM_PATH}"

    def start(self) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
                if urlsplit(self.path).path != STREAM_PATH:  # a camera ignores query strings it does not know
                    self.send_error(404)
                    return
                owner.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                index = 0
                next_t = time.monotonic()
                try:
                    while owner._running.is_set():
                        data = owner.frames[index % len(owner.frames)]
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                         f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n")
                        owner.frames_sent += 1
                        index += 1
                        next_t += owner.period_s
                        time.sleep(max(0.0, next_t - time.monotonic()))
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass  # keep test output clean

        self._server = _Server((LOOPBACK, self.port), Handler)
        self._running.set()
        self._thread = threading.Thread(target=self._server.serve_forever, name="mjpeg-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listening socket and end every open stream: the camera is gone."""
        self._running.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a video as an MJPEG stream over HTTP on loopback.")
    parser.add_argument("video")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS)
    parser.add_argument("--frames", type=int, default=300, help="frames taken from the start of the video")
    args = parser.parse_args()
    server = MjpegServer(jpeg_frames(args.video, args.frames), args.fps, args.port)
    server.start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
