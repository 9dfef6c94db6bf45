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


# --- what real checkpoints pickle besides the model, and hostile variants of each --------------------

class _Call:
    """Pickles as `fn(*args)`: how a hostile file makes the loader call something."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _unpickle(obj):
    import io

    from convert.unpickle import RestrictedUnpickler

    data = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=2)
    return RestrictedUnpickler(io.BytesIO(data)).load()


def test_numpy_values_load_as_numbers():
    loaded = _unpickle({"best_fitness": np.array(0.62), "lr": np.float64(0.0039), "n": np.int64(7),
                        "flags": np.array([True, False]), "big_endian": np.arange(3, dtype=">i4")})
    assert float(loaded["best_fitness"]) == 0.62 and loaded["lr"] == np.float64(0.0039) and loaded["n"] == 7
    assert loaded["flags"].tolist() == [True, False] and loaded["big_endian"].tolist() == [0, 1, 2]


def test_saved_options_paths_and_namespaces_load_as_inert_values():
    import argparse
    import pathlib

    loaded = _unpickle({"opt": argparse.Namespace(save_dir=pathlib.PosixPath("runs/train/exp"), epochs=3),
                        "win": pathlib.PureWindowsPath("C:/data/coco.yaml")})
    assert loaded["opt"].epochs == 3 and str(loaded["opt"].save_dir) == "runs/train/exp"
    assert isinstance(loaded["opt"].save_dir, pathlib.PurePosixPath)
    assert not isinstance(loaded["opt"].save_dir, pathlib.Path)  # a pure path touches no file system
    assert loaded["win"].name == "coco.yaml"


def test_options_from_a_checkpoint_load(tmp_path):
    import argparse
    import pathlib

    from tests.convert.ultralytics_pickle import save_like_ultralytics

    path = save_like_ultralytics(build_model(yolov5_yaml("n", 2)), tmp_path / "opt.pt", {
        "best_fitness": np.array(0.5), "opt": argparse.Namespace(save_dir=pathlib.PosixPath("runs/exp"))})
    assert load_checkpoint(path).model.detect.nc == 2


def test_unstripped_training_checkpoint_loads(tmp_path):
    """What train.py writes every epoch: no ema yet, the optimizer's state, epoch and fitness as numbers."""
    from tests.convert.ultralytics_pickle import save_like_ultralytics

    model = build_model(yolov5_yaml("n", 8))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model(torch.rand(1, 3, 64, 64)).__getitem__(0).sum().backward()
    optimizer.step()
    path = save_like_ultralytics(model, tmp_path / "epoch_36.pt", {
        "epoch": 36, "best_fitness": np.float64(0.41), "optimizer": optimizer.state_dict()})
    loaded = load_checkpoint(path).model
    assert loaded.detect.nc == 8
    expected = model.half().float().state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key


import codecs  # noqa: E402  (the hostile pickles below call these)
import os  # noqa: E402
import subprocess  # noqa: E402


@pytest.mark.parametrize("evil, refused", [
    (_Call(os.system, "touch /tmp/edge_yolo_pwned"), r"refusing to load (posix|os)\.system"),
    (_Call(subprocess.call, ["true"]), r"refusing to load (subprocess|commands)\.call"),
    (_Call(eval, "1+1"), r"refusing to load (__builtin__|builtins)\.eval"),
    (b"c__builtin__\ngetattr\n(cos\npath\nS'join'\ntR.", r"refusing to load os\.path"),
    (b"c__builtin__\ngetattr\n(c__builtin__\nset\nS'__module__'\ntR.", r"getattr\(type, '__module__'\)"),
    (_Call(getattr, _Call(set), "__init__"), r"refusing to load getattr\(set, '__init__'\)"),
    (_Call(getattr, _Call(codecs.encode, "x", "latin1"), "join"), r"refusing to load getattr\(bytes, 'join'\)"),
    (_Call(pickle.loads, pickle.dumps(_Call(eval, "1"))), r"refusing to load (_pickle|pickle)\.loads"),
    (_Call(codecs.encode, "x", "rot13"), r"_codecs\.encode other than"),
    (np.array([1, "a"], dtype=object), r"refusing to load numpy\.dtype\('O8'\)"),
    (np.zeros(2, dtype=[("a", "f4"), ("b", "O")]), r"refusing to load numpy\.dtype"),
    (np.array(["text"]), r"refusing to load numpy\.dtype\('U4'\)"),
    (_Call(np.ndarray, (2,), "O"), r"refusing to load numpy\.ndarray"),
])
def test_hostile_pickles_are_refused_with_what_they_asked_for(evil, refused):
    with pytest.raises(pickle.UnpicklingError, match=refused):
        _unpickle(evil if isinstance(evil, bytes) else {"x": evil})


def test_allowed_getattr_pair_gives_a_name_not_a_method():
    import sys
    import types

    from convert.unpickle import MethodRef

    conv = type("Conv", (), {"__module__": "models.common"})
    module = types.ModuleType("models.common")
    module.Conv = conv
    saved = {k: sys.modules.get(k) for k in ("models", "models.common")}
    sys.modules.update({"models": types.ModuleType("models"), "models.common": module})
    try:
        obj = conv()
        obj.forward = _Call(getattr, obj, "forward_fuse")
        loaded = _unpickle({"m": obj})
        with pytest.raises(pickle.UnpicklingError, match=r"getattr\(Conv, '__class__'\)"):
            other = conv()
            other.x = _Call(getattr, other, "__class__")
            _unpickle(other)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    assert isinstance(loaded["m"].forward, MethodRef) and loaded["m"].forward.name == "forward_fuse"


def test_numpy_array_whose_bytes_do_not_fit_its_shape_is_refused():
    from convert.unpickle import SafeArray

    arr = np.ndarray.__new__(SafeArray, (0,), np.uint8)
    with pytest.raises(pickle.UnpicklingError, match="does not fit"):
        arr.__setstate__((1, (1000,), _unpickle(np.dtype("f8")), False, b"\0" * 8))


def test_fork_checkpoint_from_the_zoo_is_refused_naming_its_layers(shared):
    path = shared / "models/zoo/fork_yolov5face_plate_v5.0era/plate_detect.pt"
    with pytest.raises(ConvertError, match="StemBlock from a fork of YOLOv5 is not supported") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_truncated_download_says_so(tmp_path, yolov5n_pt):
    path = tmp_path / "cut.pt"
    path.write_bytes(yolov5n_pt.read_bytes()[: 1 << 20])
    with pytest.raises(ConvertError, match="is truncated .*an incomplete download") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
