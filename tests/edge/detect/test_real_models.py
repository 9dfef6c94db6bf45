"""The converted yolov5n models from $EDGE_YOLO_TEST_MODELS on the shared photos and video."""

from __future__ import annotations

import cv2
import pytest

from edge.detect.detector import STAGES, DetectSettings, Detector
from edge.sources import iter_frames
from tests.boxes import iou_matrix
from tests.edge.edge_testing import frame_budget

PRECISIONS = ["int8", "fp32", "fp16"]
PERSON, BUS = 0, 5
MATCH_IOU = 0.8  # int8 boxes land within a few pixels of fp32


@pytest.fixture(scope="module", params=PRECISIONS)
def detector(request, model_dir) -> Detector:
    return Detector(model_dir / f"yolov5n_320_{request.param}.tflite", DetectSettings(conf=0.25, iou=0.45), threads=2)


def detect_photo(detector, data_dir, name):
    frame = cv2.imread(str(data_dir / "data" / "photos" / name))
    return frame, *detector.detect(frame)


def test_bus_has_people_and_a_bus(detector, data_dir):
    frame, dets, timings = detect_photo(detector, data_dir, "bus.jpg")
    classes = dets.class_id.tolist()
    assert classes.count(PERSON) >= 3 and classes.count(BUS) == 1, dets.to_json(detector.names)
    assert detector.names[PERSON] == "person" and detector.names[BUS] == "bus"
    height, width = frame.shape[:2]
    assert (dets.xyxy >= 0).all() and (dets.xyxy[:, 0::2] <= width).all() and (dets.xyxy[:, 1::2] <= height).all()
    bus_box = dets.xyxy[dets.class_id == BUS][0]
    assert bus_box[2] - bus_box[0] > 0.8 * width  # the bus spans the photo
    assert set(timings) == set(STAGES) and all(ms >= 0 for ms in timings.values())


def test_zidane_has_two_people(detector, data_dir):
    _, dets, _ = detect_photo(detector, data_dir, "zidane.jpg")
    assert dets.class_id.tolist().count(PERSON) == 2, dets.to_json(detector.names)


def test_class_filter_keeps_only_persons(model_dir, data_dir):
    detector = Detector(model_dir / "yolov5n_320_int8.tflite", DetectSettings(classes=(PERSON,)), threads=2)
    _, dets, _ = detect_photo(detector, data_dir, "bus.jpg")
    assert len(dets) >= 3 and set(dets.class_id.tolist()) == {PERSON}


@pytest.mark.parametrize("photo", ["bus.jpg", "zidane.jpg"])
def test_int8_agrees_with_fp32(model_dir, data_dir, photo):
    runs = {}
    for precision in ("int8", "fp32"):
        detector = Detector(model_dir / f"yolov5n_320_{precision}.tflite", threads=2)
        runs[precision] = detect_photo(detector, data_dir, photo)[1]
    confident = runs["fp32"][runs["fp32"].score >= 0.5]
    overlap = iou_matrix(confident.xyxy, runs["int8"].xyxy)
    same_class = confident.class_id[:, None] == runs["int8"].class_id[None, :]
    assert ((overlap >= MATCH_IOU) & same_class).any(axis=1).all()


def test_video_people_walking_in(model_dir, data_dir):
    """The first person walks in around frame 60 of the clip; the empty scene before gives nothing."""
    detector = Detector(model_dir / "yolov5n_320_int8.tflite", threads=2)
    video = data_dir / "data" / "video" / "one-by-one-person-detection.mp4"
    frames = frame_budget(100, 70)
    persons = [
        int((detector.detect(frame.image)[0].class_id == PERSON).sum()) for frame in iter_frames(video, max_frames=frames)
    ]
    assert len(persons) == frames
    assert sum(persons[:30]) == 0 and sum(count > 0 for count in persons[60:]) >= (frames - 60) // 2, persons
