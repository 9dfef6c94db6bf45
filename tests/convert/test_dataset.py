"""YOLO data set reading: strict labels, errors naming file and line, and the COCO ground truth it builds."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from convert.cli import main
from convert.dataset import coco_detections, coco_ground_truth, read_dataset, read_image, read_labels
from convert.errors import ConvertError
from convert.report import parse_data_spec

NC = 80


def make_dataset(root, labels: dict[str, str | None], size_wh=(64, 48)):
    """`labels` maps an image stem to its label text (None: no label file)."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for stem, text in labels.items():
        cv2.imwrite(str(root / "images" / f"{stem}.jpg"), np.full((size_wh[1], size_wh[0], 3), 90, np.uint8))
        if text is not None:
            (root / "labels" / f"{stem}.txt").write_text(text)
    return root


BAD_LABELS = [
    # (label text, what the message must say besides the file name and line)
    ("0 0.5 0.5 0.2", "4 columns, expected 5"),
    ("0 0.5 0.5 0.2 0.2 0.1", "6 columns, expected 5"),
    ("80 0.5 0.5 0.2 0.2", "class 80 is not a class id of this model (0..79)"),
    ("-1 0.5 0.5 0.2 0.2", "class -1 is not a class id"),
    ("1.5 0.5 0.5 0.2 0.2", "class 1.5 is not a class id"),
    ("0 1.2 0.5 0.2 0.2", "outside [0, 1]"),
    ("0 0.5 0.5 -0.1 0.2", "outside [0, 1]"),
    ("0 0.5 abc 0.2 0.2", "is not five numbers"),
    ("0 0.5 nan 0.2 0.2", "non-finite"),
]


@pytest.mark.parametrize("text, message", BAD_LABELS)
def test_bad_label_line_names_file_and_line(tmp_path, text, message):
    root = make_dataset(tmp_path / "set", {"a": "0 0.5 0.5 0.1 0.1", "b": f"1 0.5 0.5 0.1 0.1\n\n{text}\n"})
    with pytest.raises(ConvertError) as err:
        read_dataset(root, NC)
    assert f"{root / 'labels' / 'b.txt'}:3" in str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize("setup, message", [
    (lambda root: root.mkdir(), "images does not exist"),
    (lambda root: (root / "images").mkdir(parents=True), "holds no images"),
])
def test_unusable_folder(tmp_path, setup, message):
    root = tmp_path / "set"
    setup(root)
    with pytest.raises(ConvertError, match=message) as err:
        read_dataset(root, NC)
    assert str(root / "images") in str(err.value)


def test_unreadable_image_is_named(tmp_path):
    root = make_dataset(tmp_path / "set", {"a": None})
    broken = root / "images" / "a.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ConvertError, match="cannot be decoded") as err:
        read_image(broken)
    assert str(broken) in str(err.value)


def test_cli_missing_model_is_one_line(tmp_path, capsys):
    root = make_dataset(tmp_path / "set", {"a": None})
    code = main(["eval", "--model", str(tmp_path / "missing.tflite"), "--data", str(root)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "missing.tflite does not exist" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("text, expected", [
    (None, np.empty((0, 5))),  # no label file: background image
    ("", np.empty((0, 5))),
    ("\n3 0.5 0.25 0.1 0.2\n\n", np.array([[3, 0.5, 0.25, 0.1, 0.2]])),
    ("0 0 0 1 1\n79 1 1 0 0", np.array([[0, 0, 0, 1, 1], [79, 1, 1, 0, 0]])),
])
def test_good_labels(tmp_path, text, expected):
    path = tmp_path / "a.txt"
    if text is not None:
        path.write_text(text)
    np.testing.assert_array_equal(read_labels(path, NC), expected)


def test_limit_keeps_first_images_by_name(tmp_path):
    root = make_dataset(tmp_path / "set", {"c": None, "a": None, "b": "2 0.5 0.5 0.5 0.5"})
    samples = read_dataset(root, NC, limit=2)
    assert [s.image.name for s in samples] == ["a.jpg", "b.jpg"]
    with pytest.raises(ConvertError, match="--limit 0"):
        read_dataset(root, NC, limit=0)


def test_coco_ground_truth_in_pixels(tmp_path):
    root = make_dataset(tmp_path / "set", {"a": "2 0.5 0.25 0.5 0.5\n0 0.1 0.1 0.2 0.2", "b": None})
    samples = read_dataset(root, NC)
    gt = coco_ground_truth(samples, [(200, 100), (64, 48)], [f"c{i}" for i in range(NC)])
    assert [im["id"] for im in gt["images"]] == [1, 2]
    assert [im["width"] for im in gt["images"]] == [200, 64]
    first, second = gt["annotations"]
    assert first["id"] == 1 and first["image_id"] == 1 and first["category_id"] == 3
    np.testing.assert_allclose(first["bbox"], [50, 0, 100, 50])
    assert first["area"] == pytest.approx(5000) and first["iscrowd"] == 0
    assert second["id"] == 2 and second["category_id"] == 1
    only_person = coco_ground_truth(samples, [(200, 100), (64, 48)], [f"c{i}" for i in range(NC)], classes=[0])
    assert [a["category_id"] for a in only_person["annotations"]] == [1]


def test_coco_detections_xyxy_to_xywh():
    records = coco_detections(4, np.array([[10, 20, 30, 60]]), np.array([0.5]), np.array([7]))
    assert records == [{"image_id": 5, "category_id": 8, "bbox": [10.0, 20.0, 20.0, 40.0], "score": 0.5}]


@pytest.mark.parametrize("text, folder, classes, label", [
    ("data/coco-train130", "data/coco-train130", None, "coco-train130"),
    ("data/coco-val-person700:0", "data/coco-val-person700", [0], "coco-val-person700 classes 0"),
    ("/x/y:0,2,5", "/x/y", [0, 2, 5], "y classes 0,2,5"),
    ("c:/odd", "c:/odd", None, "odd"),
])
def test_report_data_spec(text, folder, classes, label):
    spec = parse_data_spec(text)
    assert (str(spec.folder), spec.classes, spec.label) == (folder, classes, label)
