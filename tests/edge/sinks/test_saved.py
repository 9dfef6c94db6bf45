"""Annotated frames and video on a real small disk: whole files, rotation by count and size, a playable video."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import pytest

from edge.detect.detections import Detections
from edge.errors import EdgeError
from edge.fields import InvalidSetting
from edge.sinks.saved import VIDEO_RESERVE_BYTES, AnnotatedImageSink, AnnotatedVideoSink
from edge.sinks.settings import OutputSettings
from edge.sources import Frame, iter_frames
from tests.edge.small_disk import fill, mounted_tmpfs

NAMES = ("person", "car")
VIDEO = Path("data") / "video" / "car-detection.mp4"


@pytest.fixture(scope="module")
def video_frames(data_dir) -> list[Frame]:
    return list(iter_frames(data_dir / VIDEO, max_frames=120))


def frames_in(path: Path) -> int:
    """Frames a player decodes from ``path`` (0 when it does not open)."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    try:
        while capture.isOpened() and capture.read()[0]:
            count += 1
    finally:
        capture.release()
    return count


def test_the_folder_is_kept_within_the_count(tmp_path, video_frames):
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "notes.jpg").write_bytes(b"the user's own file")  # not named like a saved frame: never touched
    earlier = folder / "camera0_000999.jpg"
    earlier.write_bytes(b"x" * 10)  # a frame an earlier run left: the oldest, removed first
    sink = AnnotatedImageSink(folder, NAMES, max_files=5)
    for frame in video_frames[:12]:
        sink.write(frame, Detections.empty())
    kept = sorted(p.name for p in folder.iterdir())
    assert kept == sorted(["notes.jpg"] + [f"car-detection_{i:06d}.jpg" for i in range(7, 12)])


def test_the_folder_is_kept_within_the_size(tmp_path, video_frames):
    folder = tmp_path / "saved"
    max_mb = 0.2
    sink = AnnotatedImageSink(folder, NAMES, max_mb=max_mb)
    for frame in video_frames[:30]:
        sink.write(frame, Detections.empty())
    files = sorted(folder.iterdir())
    assert 2 <= len(files) < 30 and sum(p.stat().st_size for p in files) <= max_mb * 1024 * 1024
    assert files[-1].name == "car-detection_000029.jpg"  # the newest kept


@pytest.mark.parametrize("values, field", [({"save_max_files": 0}, "save_max_files"), ({"save_max_mb": 0.0}, "save_max_mb")])
def test_the_bounds_are_checked_settings(values, field):
    assert (OutputSettings().save_max_files, OutputSettings().save_max_mb) == (10_000, 1024.0)
    with pytest.raises(InvalidSetting, match=field):
        OutputSettings(**values)


def test_a_full_disk_is_said_as_such_and_no_partial_file_is_left(tmp_path, video_frames):
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        folder = disk / "saved"
        sink = AnnotatedImageSink(folder, NAMES)
        filler = fill(disk, leave_bytes=100_000)
        written, refused = 0, []
        for frame in video_frames[:20]:  # about 27 kB each
            try:
                sink.write(frame, Detections.empty())
                written += 1
            except EdgeError as exc:
                refused.append(str(exc))
        assert 0 < written < 20 and refused
        assert "No space left on device" in refused[0] and f"kB free in {folder})" in refused[0]
        assert "writable" not in refused[0]  # not blamed on permissions
        files = sorted(folder.iterdir())
        assert [p.suffix for p in files] == [".jpg"] * written  # no half-written file, no temporary
        assert all(cv2.imread(str(p)) is not None for p in files)
        filler.unlink()
        sink.write(video_frames[50], Detections.empty())  # space is back: saved again
        assert (folder / "car-detection_000050.jpg").is_file()


def test_a_video_on_a_filling_disk_is_closed_playable_and_goes_on_when_space_is_back(tmp_path, video_frames, caplog):
    with mounted_tmpfs(tmp_path / "disk", "4m") as disk:
        target = disk / "annotated.mp4"
        filler = fill(disk, leave_bytes=VIDEO_RESERVE_BYTES + 100_000)  # FFmpeg writes out 256 kB at a time
        sink = AnnotatedVideoSink(target, NAMES, 12.5)
        taken, refused = 0, 0
        with caplog.at_level(logging.WARNING):
            for frame in video_frames:
                try:
                    sink.write(frame, Detections.empty())
                    taken += 1
                except EdgeError as exc:
                    refused += 1
                    message = str(exc)
        assert taken > 0 and refused > 0, (taken, refused)
        assert message.startswith(f"no room for --save {target}: ") and "kB free" in message
        closed = [r.getMessage() for r in caplog.records if "closed" in r.getMessage()]
        assert len(closed) == 1 and f"closed {target} after {taken} frames so that it stays playable" in closed[0]
        assert frames_in(target) == taken
        filler.unlink()
        for frame in video_frames[:10]:
            sink.write(frame, Detections.empty())
        sink.close()
        assert sink.files == [target, disk / "annotated-2.mp4"]
        assert frames_in(target) == taken and frames_in(disk / "annotated-2.mp4") == 10


def test_close_says_when_a_video_cannot_be_finished(tmp_path, video_frames):
    with mounted_tmpfs(tmp_path / "disk", "4m") as disk:
        target = disk / "annotated.mp4"
        sink = AnnotatedVideoSink(target, NAMES, 12.5)
        for frame in video_frames[:40]:
            sink.write(frame, Detections.empty())
        fill(disk)  # filled by something else, between two frames and the end: nothing left for the index
        with pytest.raises(EdgeError, match=f"the video {target} could not be finished and will not play"):
            sink.close()
