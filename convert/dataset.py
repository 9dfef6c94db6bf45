"""A YOLO-format data set (`images/`, `labels/*.txt`) read strictly, and turned into COCO ground truth.

Every label line is checked. A line that cannot be read is an error naming the file and line, never
an image quietly counted as background: a missing box would make every model look better on it.
An image with no label file, or an empty one, holds no objects.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from convert.calibration import IMAGE_SUFFIXES
from convert.errors import ConvertError

LABEL_COLUMNS = 5  # class cx cy w h, coordinates normalised to the image size
# COCO counts ids from 1 and pycocotools treats annotation id 0 as "unmatched": shift both.
COCO_ID_OFFSET = 1


@dataclass(frozen=True)
class Sample:
    """One image and its boxes: `labels` is `(n, 5)` float64 rows of class, cx, cy, w, h (normalised)."""

    image: Path
    labels: np.ndarray


def read_dataset(root: Path, nc: int, limit: int | None = None) -> list[Sample]:
    """The images of `root/images` in name order, each with its validated labels (class ids < `nc`)."""
    root = Path(root)
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise ConvertError(f"{images_dir} does not exist: --data needs a YOLO data set folder "
                           "with images/*.jpg and labels/*.txt")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ConvertError(f"{images_dir} holds no images (.jpg, .png, ...): nothing to evaluate")
    if limit is not None:
        if limit < 1:
            raise ConvertError(f"--limit {limit} must be at least 1")
        images = images[:limit]
    labels_dir = root / "labels"
    return [Sample(image, read_labels(labels_dir / f"{image.stem}.txt", nc)) for image in images]


def read_labels(path: Path, nc: int) -> np.ndarray:
    """`(n, 5)` rows of a label file; a missing file means no objects; any bad line is a ConvertError."""
    if not path.is_file():
        return np.empty((0, LABEL_COLUMNS))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConvertError(f"{path}: cannot be read ({exc}): label files are UTF-8 text") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            rows.append(_parse_line(line, f"{path}:{number}", nc))
    return np.array(rows, dtype=np.float64).reshape(-1, LABEL_COLUMNS)


def _parse_line(line: str, where: str, nc: int) -> list[float]:
    fields = line.split()
    if len(fields) != LABEL_COLUMNS:
        raise ConvertError(f"{where}: {len(fields)} columns, expected {LABEL_COLUMNS} "
                           "(class cx cy w h; segment labels are not supported)")
    try:
        values = [float(f) for f in fields]
    except ValueError:
        raise ConvertError(f"{where}: {line.strip()!r} is not five numbers") from None
    class_id, cx, cy, w, h = values
    if not all(math.isfinite(v) for v in values):
        raise ConvertError(f"{where}: {line.strip()!r} holds a non-finite number")
    if class_id != int(class_id) or not 0 <= class_id < nc:
        raise ConvertError(f"{where}: class {fields[0]} is not a class id of this model (0..{nc - 1})")
    if not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)):
        raise ConvertError(f"{where}: coordinates {' '.join(fields[1:])} are outside [0, 1]: "
                           "YOLO labels are normalised to the image size")
    return values


def read_image(path: Path) -> np.ndarray:
    """The image as uint8 BGR `(H, W, 3)`, or a ConvertError naming it."""
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise ConvertError(f"{path}: cannot be decoded as an image: replace or remove the file")
    return frame


def coco_ground_truth(samples: list[Sample], sizes_wh: list[tuple[int, int]], names: list[str] | tuple[str, ...],
                      classes: list[int] | None = None) -> dict:
    """A COCO detection document for `samples` (image `i` gets id `i + 1`, class `c` category `c + 1`).

    Boxes become pixel `[x, y, w, h]` with `area = w * h` and `iscrowd = 0`: YOLO labels carry no
    segmentation area and no crowd flag. `classes` keeps only those classes' boxes.
    """
    images, annotations = [], []
    keep = None if classes is None else set(classes)
    for index, (sample, (width, height)) in enumerate(zip(samples, sizes_wh)):
        image_id = index + COCO_ID_OFFSET
        images.append({"id": image_id, "file_name": sample.image.name, "width": width, "height": height})
        for class_id, cx, cy, w, h in sample.labels:
            if keep is not None and int(class_id) not in keep:
                continue
            box_w, box_h = w * width, h * height
            annotations.append({
                "id": len(annotations) + COCO_ID_OFFSET, "image_id": image_id,
                "category_id": int(class_id) + COCO_ID_OFFSET,
                "bbox": [(cx * width) - box_w / 2, (cy * height) - box_h / 2, box_w, box_h],
                "area": box_w * box_h, "iscrowd": 0,
            })
    categories = [{"id": i + COCO_ID_OFFSET, "name": name} for i, name in enumerate(names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_detections(image_index: int, xyxy: np.ndarray, score: np.ndarray, class_id: np.ndarray) -> list[dict]:
    """COCO result records for one image's detections (frame pixels, xyxy → xywh)."""
    boxes = np.asarray(xyxy, dtype=np.float64)
    wh = boxes[:, 2:] - boxes[:, :2]
    return [{"image_id": image_index + COCO_ID_OFFSET, "category_id": int(c) + COCO_ID_OFFSET,
             "bbox": [float(x), float(y), float(w), float(h)], "score": float(s)}
            for (x, y), (w, h), s, c in zip(boxes[:, :2], wh, score, class_id)]
