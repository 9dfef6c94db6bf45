"""Whether a model is a pruned form of another: what distillation and reconstruction require."""
from __future__ import annotations

import torch

from convert.errors import ConvertError
from convert.prune.depth import original_name, removed_bottlenecks
from convert.yolo_model import YOLOv5


def check_student(teacher: YOLOv5, student: YOLOv5, student_name: str = "student",
                  depth: dict[str, list[int]] | None = None):
    """Refuse a student that is not a pruned form of the teacher: same wiring, classes and strides,
    no layer wider, and only bottlenecks missing (those the depth map says were removed)."""
    problems = []
    if student.detect.nc != teacher.detect.nc:
        problems.append(f"{student.detect.nc} classes vs the teacher's {teacher.detect.nc}")
    if student.strides != teacher.strides:
        problems.append(f"strides {student.strides} vs {teacher.strides}")
    if student.detect.na != teacher.detect.na:
        problems.append(f"{student.detect.na} anchors per level vs {teacher.detect.na}")
    elif not torch.allclose(student.anchors_px, teacher.anchors_px):
        problems.append("different anchors")
    if len(student.model) != len(teacher.model) or \
            [s.module for s in student.layers] != [s.module for s in teacher.layers]:
        problems.append(f"{len(student.model)} layers vs the teacher's {len(teacher.model)}")
    elif not _same_depth(teacher, student, depth):
        problems.append("a different set of convolutions (other depth)")
    else:
        t_shapes = teacher.channel_shapes()
        shapes = {original_name(n, depth): s for n, s in student.channel_shapes().items()}
        wider = [n for n, (o, i) in shapes.items() if o > t_shapes[n][0] or i > t_shapes[n][1]]
        if wider:
            problems.append(f"{wider[0]} is wider than the teacher's (other width)")
    if problems:
        raise ConvertError(f"{student_name} is not a pruned form of the teacher ({'; '.join(problems)}): "
                           "pass a checkpoint written by `edge-convert prune` from the same weights")


def _same_depth(teacher: YOLOv5, student: YOLOv5, depth: dict[str, list[int]] | None) -> bool:
    """The student has the teacher's convolutions, less whole bottlenecks named by `depth`."""
    expected = {n for n in teacher.channel_shapes()
                if not (depth and any(n.startswith(f"{b.name}.") for b in removed_bottlenecks(teacher, depth)))}
    return {original_name(n, depth) for n in student.channel_shapes()} == expected
