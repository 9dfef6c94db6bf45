"""Loading real and hostile checkpoints."""
from __future__ import annotations

import pickle
import zipfile

import cv2
import numpy as np
import pytest
import torch

from convert.checkpoint import load_checkpoint, save_checkpoint
from convert.errors import ConvertError
from convert.yolo_model import build_model, yolov5_yaml
from tests.convert.torch_detect import torch_detect

YOLOV5N_FUSED_PARAMS = 1_867_405  # published figure for YOLOv5n v6.1 after Conv+BN fusion


def test_yolov5n_loads_with_published_parameter_count(yolov5n):
    assert yolov5n.kind == "ultralytics"
    assert yolov5n.sha256 == "4f180cf23ba0717ada0badd6c685026d73d48f184d00fc159c2641284b2ac0a3"
    model = yolov5n.model
    assert model.strides == [8, 16, 32]
    assert model.names[:3] == ["person", "bicycle", "car"] and len(model.names) == 80
    fused = load_checkpoint(yolov5n.path).model.fuse()
    assert sum(p.numel() for p in fused.parameters()) == YOLOV5N_FUSED_PARAMS


def test_bus_at_640_finds_three_people_and_the_bus(yolov5n, shared):
    frame = cv2.imread(str(shared / "data/photos/bus.jpg"))
    dets = torch_detect(yolov5n.model, frame, 640, conf=0.25, iou=0.45)
    labels = sorted(yolov5n.model.names[c] for c in dets.class_id)
    assert labels == ["bus", "person", "person", "person"]
    people = np.sort(dets.score[dets.class_id == 0])[::-1]
    np.testing.assert_allclose(people, [0.82, 0.82, 0.68], atol=0.02)
    np.testing.assert_allclose(dets.score[dets.class_id == 5], [0.53], atol=0.02)


def test_fused_model_matches_unfused(yolov5n):
    x = torch.rand(1, 3, 256, 320, generator=torch.Generator().manual_seed(0))
    model = load_checkpoint(yolov5n.path).model
    with torch.no_grad():
        before = model(x)
        after = model.fuse()(x)
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("size, nc", [("n", 80), ("s", 3), ("m", 1)])
def test_every_size_builds_and_runs(size, nc):
    model = build_model(yolov5_yaml(size, nc)).eval()
    with torch.no_grad():
        outs = model(torch.zeros(1, 3, 128, 160))
    assert [tuple(o.shape) for o in outs] == [(1, 3 * (nc + 5), 128 // s, 160 // s) for s in (8, 16, 32)]


def test_own_format_round_trips(yolov5n, tmp_path):
    path = save_checkpoint(yolov5n.model, tmp_path / "copy.pt", note="round trip")
    again = load_checkpoint(path)
    assert again.kind == "edge-yolo" and again.extra == {"note": "round trip"}
    for (k, a), (_, b) in zip(yolov5n.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), k
    # the own format is plain tensors and containers: the safest loader accepts it
    torch.load(path, weights_only=True)


class _RunsCode:
    def __reduce__(self):
        return (eval, ("__import__('os').system('touch /tmp/edge_yolo_pwned')",))


def _write_torch_zip(path, obj):
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"not a zip at all"), "not a PyTorch checkpoint"),
    (lambda p: _write_torch_zip(p, {"weights": torch.zeros(3)}), "not a YOLOv5 checkpoint"),
    (lambda p: _write_torch_zip(p, {"model": _RunsCode()}), r"refusing to load (__builtin__|builtins)\.eval"),
    (lambda p: p.write_bytes(zipfile.ZipFile.__doc__.encode()[:10]), "not a PyTorch checkpoint"),
])
def test_bad_checkpoints_give_one_clear_error(tmp_path, make, message):
    path = tmp_path / "bad.pt"
    make(path)
    with pytest.raises(ConvertError, match=message) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_truncated_checkpoint(tmp_path, yolov5n_pt):
    path = tmp_path / "cut.pt"
    path.write_bytes(yolov5n_pt.read_bytes()[: 1_000_000])
    with pytest.raises(ConvertError):
        load_checkpoint(path)


def test_pickle_that_runs_code_never_runs(tmp_path):
    marker = "/tmp/edge_yolo_pwned"
    path = _write_torch_zip(tmp_path / "evil.pt", {"model": _RunsCode()})
    with pytest.raises(ConvertError):
        load_checkpoint(path)
    import os
    assert not os.path.exists(marker)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ConvertError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_pickle_module_is_not_reachable_through_checkpoint(tmp_path):
    # a global that is harmless-looking but not on the allow-list is refused too
    path = _write_torch_zip(tmp_path / "odd.pt", {"model": pickle.Pickler})
    with pytest.raises(ConvertError, match="refusing to load"):
        load_checkpoint(path)
