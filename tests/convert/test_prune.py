"""Pruning: the smaller network runs, exports, costs less, and survives a save/load round trip."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from convert.checkpoint import load_checkpoint, save_checkpoint
from convert.cli import main
from convert.errors import ConvertError
from convert.onnx_export import export_onnx
from convert.prune import METHODS, check_student, input_stats, measure, prune_model, prune_to_cost
from convert.yolo_model import build_model, yolov5_yaml

IMGSZ = (128, 128)


@pytest.fixture(scope="module")
def yolov5s_random():
    torch.manual_seed(0)
    model = build_model(yolov5_yaml("s", nc=80)).eval()
    # Random batch-norm scales, so bn importance has something to rank.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.2, 1.5)
    return model


@pytest.fixture(scope="module")
def photos(shared):
    """Eight real photos, letterboxed as the device does, `[8, 3, H, W]` in [0, 1]."""
    from convert.prune import stats_images

    return stats_images([shared / "data" / "coco-val-person700"], IMGSZ, count=8)


@pytest.fixture(params=["yolov5n", "yolov5s_random"])
def base_model(request):
    """The released yolov5n, and a randomly initialised yolov5s (other widths, other weights)."""
    value = request.getfixturevalue(request.param)
    return value.model if request.param == "yolov5n" else value


@pytest.mark.parametrize("ratio", [0.1, 0.5])
@pytest.mark.parametrize("method", METHODS)
def test_pruned_model_runs_exports_and_costs_less(base_model, photos, method, ratio, tmp_path):
    import onnxruntime

    original = base_model
    pruned = prune_model(original, ratio, method, imgsz_hw=IMGSZ, stats=input_stats(original, photos))
    before, after = measure(original, IMGSZ), measure(pruned, IMGSZ)
    assert after.params < before.params
    assert after.macs < before.macs
    assert pruned.channel_shapes() != original.channel_shapes()
    for name, (c_out, _) in pruned.channel_shapes().items():
        if not name.startswith(f"model.{len(pruned.model) - 1}."):
            assert c_out % 8 == 0, name
    # Detection outputs keep the contract's layout.
    x = torch.rand(1, 3, *IMGSZ)
    with torch.no_grad():
        shapes = [o.shape for o in pruned.eval()(x)]
        assert shapes == [o.shape for o in original(x)]
    check_student(original, pruned)
    onnx_path = export_onnx(pruned.fuse(), tmp_path / "pruned.onnx", IMGSZ)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outs = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        ref = [torch.sigmoid(o).numpy() for o in pruned(x)]
    assert max(float(np.abs(a - b).max()) for a, b in zip(outs, ref)) < 1e-3


def test_ratio_removes_about_that_fraction_of_channels(yolov5n):
    pruned = prune_model(yolov5n.model, 0.3, "l1", imgsz_hw=IMGSZ)
    before, after = yolov5n.model.channel_shapes(), pruned.channel_shapes()
    big = [n for n, (c, _) in before.items() if c >= 64 and not n.startswith("model.24.")]
    kept = np.mean([after[n][0] / before[n][0] for n in big])
    assert 0.6 <= kept <= 0.8


def test_pruned_checkpoint_round_trips(yolov5n, tmp_path):
    pruned = prune_model(yolov5n.model, 0.3, "l2", imgsz_hw=IMGSZ)
    path = save_checkpoint(pruned, tmp_path / "p.pt")
    loaded = load_checkpoint(path)
    assert loaded.kind == "edge-yolo"
    assert loaded.model.channel_shapes() == pruned.channel_shapes()
    assert loaded.model.names == yolov5n.model.names
    x = torch.rand(2, 3, *IMGSZ)
    with torch.no_grad():
        for a, b in zip(loaded.model(x), pruned.eval()(x)):
            torch.testing.assert_close(a, b)


def test_prune_command_writes_a_smaller_model(yolov5n_pt, shared, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((shared / "data" / "coco-val-person700" / "images").glob("*.jpg"))[:4]:
        (images / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "p.pt"
    assert main(["prune", "--weights", str(yolov5n_pt), "--ratio", "0.3", "--images", str(images),
                 "--imgsz", "160", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    fewer_macs = float(printed.split("% fewer MACs")[0].rsplit(" ", 1)[-1])
    assert 30.0 <= fewer_macs < 40.0
    saved = load_checkpoint(out)
    recipe = saved.extra["prune"]
    assert {k: recipe[k] for k in ("ratio", "method", "round_to", "depth", "reconstruct")} == \
        {"ratio": 0.3, "method": "act", "round_to": 8, "depth": 0, "reconstruct": "ls"}
    assert "reconstruction (ls" in printed
    shapes = saved.model.channel_shapes()
    assert {n: len(k) for n, k in saved.extra["kept_channels"].items()} == {n: s[0] for n, s in shapes.items()}


def test_ratio_is_the_cost_saving(yolov5n):
    """--ratio asks for a MACs saving; removing that fraction of channels would save about twice as much."""
    original = measure(yolov5n.model, IMGSZ)
    pruned = measure(prune_to_cost(yolov5n.model, 0.3, "l1", imgsz_hw=IMGSZ), IMGSZ)
    assert 0.30 <= 1 - pruned.macs / original.macs < 0.40
    assert 1 - pruned.params / original.params >= 0.30


def test_compensation_keeps_what_constant_channels_fed_the_next_layers(yolov5n, photos):
    """Channels whose output is a non-zero constant (batch-norm scale 0, shift 1): removing them
    with the activation statistics folds their contribution into the consumers; without, every
    later layer shifts."""
    from convert.prune import layer_ratio
    from convert.yolo_model import Conv

    constant = copy.deepcopy(yolov5n.model).eval()
    for module in constant.modules():
        if isinstance(module, Conv):
            channels = module.bn.num_features
            removed = channels - int(channels * (1 - layer_ratio(channels, 0.3, 8)))
            with torch.no_grad():
                module.bn.weight[:removed] = 0
                module.bn.bias[:removed] = 1
    stats = input_stats(constant, photos)
    with_stats, without = (prune_model(constant, 0.3, "bn", imgsz_hw=IMGSZ, stats=s).eval() for s in (stats, None))
    x = photos[:2]
    with torch.no_grad():
        ref = constant(x)
        compensated, plain = (max(float((a - b).abs().mean()) for a, b in zip(ref, m(x))) for m in (with_stats, without))
    assert compensated < 0.1 * plain


@pytest.mark.parametrize("ratio", ["0", "1", "-0.2", "1.5"])
def test_ratio_outside_open_interval_is_one_clear_error(yolov5n_pt, tmp_path, capsys, ratio):
    assert main(["prune", "--weights", str(yolov5n_pt), "--ratio", ratio, "--out", str(tmp_path / "p.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edge-convert: error: --ratio") and "(0, 1)" in err
    assert "\n" not in err and not (tmp_path / "p.pt").exists()


@pytest.mark.parametrize("student_yaml, problem", [
    (yolov5_yaml("n", nc=20), "classes"),
    (yolov5_yaml("m", nc=80), "convolutions"),
    (yolov5_yaml("s", nc=80), "wider"),
    (yolov5_yaml("n", nc=80, anchors=[[10, 14, 23, 27, 37, 58], [81, 82, 135, 169, 344, 319],
                                       [400, 400, 500, 500, 600, 600]]), "anchors"),
])
def test_student_that_is_not_a_pruned_teacher_is_refused(yolov5n, student_yaml, problem):
    with pytest.raises(ConvertError, match=problem):
        check_student(yolov5n.model, build_model(student_yaml), "student.pt")


def test_removing_silent_channels_leaves_the_outputs_unchanged(yolov5n):
    """Silence the channels `bn` pruning will pick (scale and shift 0, so SiLU gives exactly 0):
    removing them must not change the outputs. This checks the channel bookkeeping across C3
    residual adds, Concat and SPPF end to end, not just the shapes."""
    from convert.prune import layer_ratio
    from convert.yolo_model import Conv

    silenced = copy.deepcopy(yolov5n.model).eval()
    for module in silenced.modules():
        if isinstance(module, Conv):
            channels = module.bn.num_features
            removed = channels - int(channels * (1 - layer_ratio(channels, 0.3, 8)))
            with torch.no_grad():
                module.bn.weight[:removed] = 0
                module.bn.bias[:removed] = 0
    pruned = prune_model(silenced, 0.3, "bn", imgsz_hw=IMGSZ).eval()
    assert measure(pruned, IMGSZ).params < 0.7 * measure(silenced, IMGSZ).params
    x = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        for a, b in zip(silenced(x), pruned(x)):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-4)
    # The channel map says which original channel each remaining one is, block by block.
    from convert.distill import BlockOutputs, feature_pairs

    pairs = feature_pairs(pruned, pruned.kept_channels)
    assert len(pairs) == sum(s.module in ("Conv", "C3", "SPPF") for s in pruned.layers)
    indices = [i for i, _ in pairs]
    with torch.no_grad(), BlockOutputs(silenced, indices) as full, BlockOutputs(pruned, indices) as kept:
        silenced(x), pruned(x)
    for index, channels in pairs:
        torch.testing.assert_close(kept[index], full[index][:, channels], rtol=0, atol=1e-4)
