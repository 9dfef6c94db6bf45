"""Every real checkpoint of shared/models/zoo: it loads, or is refused in one line saying why."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from convert.checkpoint import load_checkpoint
from convert.errors import ConvertError
from convert.onnx_export import INPUT_NAME, SigmoidHeads, export_onnx
from tests.convert.torch_detect import torch_detect
from tests.convert.zoo import REFUSALS, implied_fused_parameters, zoo_entries

ENTRIES = zoo_entries()
LOADABLE = [e for e in ENTRIES if e.loads]


@pytest.fixture(scope="module")
def zoo(shared):
    missing = [str(e.path) for e in ENTRIES if not e.path.is_file()]
    if missing:
        pytest.fail(f"zoo checkpoints missing: {missing[:2]} (EDGE_YOLO_DATA={shared})", pytrace=False)
    return {e.folder: e for e in ENTRIES}


def _inspected(entry) -> dict:
    return json.loads((entry.path.parent / "inspect.json").read_text())["model"]


@pytest.mark.parametrize("folder", [e.folder for e in ENTRIES if not e.loads])
def test_refused_checkpoint_gives_one_line_naming_why(zoo, folder):
    with pytest.raises(ConvertError) as info:
        load_checkpoint(zoo[folder].path)
    message = str(info.value)
    assert REFUSALS[folder] in message and "\n" not in message


@pytest.mark.parametrize("folder", [e.folder for e in LOADABLE])
def test_checkpoint_loads_with_its_classes_and_parameters(zoo, folder):
    entry = zoo[folder]
    ckpt = load_checkpoint(entry.path)
    inspected = _inspected(entry)
    names = inspected["names"]
    names = [names[k] for k in sorted(names, key=int)] if isinstance(names, dict) else names
    assert ckpt.model.names == names and ckpt.model.detect.nc == inspected["nc"]
    fused = ckpt.model.fuse()
    assert sum(p.numel() for p in fused.parameters()) == implied_fused_parameters(entry.path)


@pytest.mark.parametrize("folder", [e.folder for e in LOADABLE])
def test_fused_onnx_export_computes_what_the_checkpoints_tensors_do(zoo, folder, tmp_path):
    import onnxruntime

    model = load_checkpoint(zoo[folder].path).model.eval()
    x = torch.rand(1, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = [o.numpy() for o in SigmoidHeads(model)(x)]  # unfused: the checkpoint's own layers
    path = export_onnx(model.fuse(), tmp_path / "m.onnx", (160, 160))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {INPUT_NAME: x.numpy()})
    assert [o.shape for o in outputs] == [r.shape for r in reference]
    assert max(float(np.abs(o - r).max()) for o, r in zip(outputs, reference)) < 1e-3


def test_licence_plate_model_finds_a_plate_in_each_of_its_images(zoo):
    entry = zoo["custom_v6.1_license_plate_bd"]
    model = load_checkpoint(entry.path).model
    assert len(entry.images) == 5
    for image in entry.images:
        dets = torch_detect(model, cv2.imread(str(image)), 320)
        assert (dets.class_id == 0).any() and dets.score.max() > 0.5, image.name


@pytest.mark.parametrize("folder", ["official_v6.0_yolov5n", "ultralytics_exp_yolov5n-7_C3x"])
def test_coco_models_find_the_bus_and_people(zoo, shared, folder):
    model = load_checkpoint(zoo[folder].path).model
    dets = torch_detect(model, cv2.imread(str(shared / "data/photos/bus.jpg")), 640)
    labels = [model.names[c] for c in dets.class_id]
    assert "bus" in labels and labels.count("person") >= 3
