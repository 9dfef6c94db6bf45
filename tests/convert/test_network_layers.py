"""Every layer of the official YOLOv5 model descriptions, through a checkpoint pickled as YOLOv5 does."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from convert.checkpoint import load_checkpoint, save_checkpoint
from convert.errors import ConvertError
from convert.prune import prune_model
from convert.yolo_model import build_model, yolov5_yaml
from tests.convert.ultralytics_pickle import save_like_ultralytics

ANCHORS_P6 = [[19, 27, 44, 40, 38, 94], [96, 68, 86, 152, 180, 137],
              [140, 301, 303, 264, 238, 542], [436, 615, 739, 380, 925, 792]]


def _yaml(backbone, head, nc=3, anchors=None, depth=0.33, width=0.125):
    return {"nc": nc, "depth_multiple": depth, "width_multiple": width,
            "anchors": anchors or yolov5_yaml()["anchors"], "backbone": backbone, "head": head}


_P5_HEAD = [  # the v5.0/v6 PANet head, indices for a 10-layer backbone with P3 at 4 and P4 at 6
    [-1, 1, "Conv", [512, 1, 1]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]], [[-1, 6], 1, "Concat", [1]],
    [-1, 3, "C3", [512, False]], [-1, 1, "Conv", [256, 1, 1]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
    [[-1, 4], 1, "Concat", [1]], [-1, 3, "C3", [256, False]], [-1, 1, "Conv", [256, 3, 2]],
    [[-1, 14], 1, "Concat", [1]], [-1, 3, "C3", [512, False]], [-1, 1, "Conv", [512, 3, 2]],
    [[-1, 10], 1, "Concat", [1]], [-1, 3, "C3", [1024, False]], [[17, 20, 23], 1, "Detect", ["nc", "anchors"]]]

V50 = _yaml([  # v5.0: Focus stem, SPP, BottleneckCSP-era blocks
    [-1, 1, "Focus", [64, 3]], [-1, 1, "Conv", [128, 3, 2]], [-1, 3, "BottleneckCSP", [128]],
    [-1, 1, "Conv", [256, 3, 2]], [-1, 9, "C3", [256]], [-1, 1, "Conv", [512, 3, 2]], [-1, 9, "C3", [512]],
    [-1, 1, "Conv", [1024, 3, 2]], [-1, 1, "SPP", [1024, [5, 9, 13]]], [-1, 3, "C3", [1024, False]]], _P5_HEAD)
GHOST_TR = _yaml([  # ghost and transformer variants
    [-1, 1, "Conv", [64, 6, 2, 2]], [-1, 1, "GhostConv", [128, 3, 2]], [-1, 3, "C3Ghost", [128]],
    [-1, 1, "GhostConv", [256, 3, 2]], [-1, 6, "C3x", [256]], [-1, 1, "DWConv", [512, 3, 2]],
    [-1, 9, "C3SPP", [512, [5, 9, 13]]], [-1, 1, "Conv", [1024, 3, 2]], [-1, 3, "C3TR", [1024]],
    [-1, 1, "SPPF", [1024, 5]]], _P5_HEAD, width=0.25)
SHUFFLE = _yaml([  # space-to-depth and back, cross convs, ghost bottlenecks, transposed upsampling
    [-1, 1, "Contract", [2]], [-1, 1, "Conv", [64, 3, 1]], [-1, 1, "Expand", [2]], [-1, 1, "Conv", [64, 3, 2]],
    [-1, 1, "CrossConv", [128, 3, 2]], [-1, 1, "GhostBottleneck", [128, 3, 2]], [-1, 2, "Bottleneck", [128]],
    [-1, 1, "Conv", [256, 3, 2]], [-1, 1, "DWConvTranspose2d", [256, 4, 2, 1]], [-1, 1, "nn.BatchNorm2d", []],
    [-1, 1, "nn.ConvTranspose2d", [128, 2, 2]], [-1, 1, "Conv", [128, 3, 2]], [-1, 1, "Conv", [256, 3, 2]],
    [-1, 1, "Conv", [512, 3, 2]], [[11, 12, 13], 1, "Detect", ["nc", "anchors"]]], [])
P6 = _yaml([
    [-1, 1, "Conv", [64, 6, 2, 2]], [-1, 1, "Conv", [128, 3, 2]], [-1, 3, "C3", [128]],
    [-1, 1, "Conv", [256, 3, 2]], [-1, 6, "C3", [256]], [-1, 1, "Conv", [512, 3, 2]], [-1, 9, "C3", [512]],
    [-1, 1, "Conv", [768, 3, 2]], [-1, 3, "C3", [768]], [-1, 1, "Conv", [1024, 3, 2]], [-1, 3, "C3", [1024]],
    [-1, 1, "SPPF", [1024, 5]]], [
    [-1, 1, "Conv", [768, 1, 1]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]], [[-1, 8], 1, "Concat", [1]],
    [-1, 3, "C3", [768, False]], [-1, 1, "Conv", [512, 1, 1]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
    [[-1, 6], 1, "Concat", [1]], [-1, 3, "C3", [512, False]], [-1, 1, "Conv", [256, 1, 1]],
    [-1, 1, "nn.Upsample", [None, 2, "nearest"]], [[-1, 4], 1, "Concat", [1]], [-1, 3, "C3", [256, False]],
    [-1, 1, "Conv", [256, 3, 2]], [[-1, 20], 1, "Concat", [1]], [-1, 3, "C3", [512, False]],
    [-1, 1, "Conv", [512, 3, 2]], [[-1, 16], 1, "Concat", [1]], [-1, 3, "C3", [768, False]],
    [-1, 1, "Conv", [768, 3, 2]], [[-1, 12], 1, "Concat", [1]], [-1, 3, "C3", [1024, False]],
    [[23, 26, 29, 32], 1, "Detect", ["nc", "anchors"]]], anchors=ANCHORS_P6)


def _randomised(model):
    """Batch-norm statistics away from identity, so a wrongly wired layer shows in the outputs."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def _outputs(model, size=128):
    with torch.no_grad():
        return model(torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("cfg, strides", [(V50, [8, 16, 32]), (GHOST_TR, [8, 16, 32]),
                                          (SHUFFLE, [8, 16, 32]), (P6, [8, 16, 32, 64])],
                         ids=["v5.0", "ghost-transformer", "contract-expand-transpose", "p6"])
def test_every_layer_loads_from_a_yolov5_pickle_and_computes_the_same(cfg, strides, tmp_path):
    model = _randomised(build_model(copy.deepcopy(cfg)))
    assert model.strides == strides
    path = save_like_ultralytics(model, tmp_path / "m.pt")
    loaded = load_checkpoint(path).model
    assert loaded.strides == strides and len(loaded.anchors_px) == len(strides)
    for a, b in zip(_outputs(loaded), _outputs(model)):
        torch.testing.assert_close(a, b)


def test_activations_come_from_the_checkpoints_modules(tmp_path):
    model = _randomised(build_model(yolov5_yaml("n", 2)))
    model.model[0].act = nn.LeakyReLU(0.1)
    model.model[1].act = nn.Hardswish()
    model.model[2].cv1.act = nn.ReLU()
    loaded = load_checkpoint(save_like_ultralytics(model, tmp_path / "act.pt")).model
    assert isinstance(loaded.model[0].act, nn.LeakyReLU) and loaded.model[0].act.negative_slope == pytest.approx(0.1)
    assert isinstance(loaded.model[1].act, nn.Hardswish) and isinstance(loaded.model[2].cv1.act, nn.ReLU)
    for a, b in zip(_outputs(loaded), _outputs(model)):
        torch.testing.assert_close(a, b)
    again = load_checkpoint(save_checkpoint(loaded, tmp_path / "own.pt")).model  # kept in the own format
    assert isinstance(again.model[0].act, nn.LeakyReLU) and isinstance(again.model[2].cv1.act, nn.ReLU)


def test_fused_and_channel_pruned_checkpoint_loads_from_its_tensors(tmp_path):
    base = _randomised(build_model(yolov5_yaml("n", 1)))
    pruned = prune_model(base, 0.3, "l1", imgsz_hw=(128, 128)).eval().fuse()
    path = save_like_ultralytics(pruned, tmp_path / "pruned_fused.pt")
    loaded = load_checkpoint(path).model
    assert loaded.model[0].conv.out_channels == pruned.model[0].conv.out_channels < 16
    assert not any(isinstance(m, nn.BatchNorm2d) for m in loaded.modules())
    for a, b in zip(_outputs(loaded), _outputs(pruned)):
        torch.testing.assert_close(a, b)


def test_a_yaml_that_does_not_fit_its_tensors_is_one_line(tmp_path):
    model = build_model(yolov5_yaml("n", 2))
    model.yaml["backbone"][1][3] = [128, 5, 2]  # says 5x5, the tensors are 3x3
    with pytest.raises(ConvertError, match="kernel") as info:
        load_checkpoint(save_like_ultralytics(model, tmp_path / "bad.pt"))
    assert "\n" not in str(info.value)


def test_a_fork_layer_is_named_in_one_line(tmp_path):
    model = build_model(yolov5_yaml("n", 2))
    model.yaml["backbone"][2][2] = "ShuffleV2Block"
    with pytest.raises(ConvertError, match="ShuffleV2Block from a fork of YOLOv5 is not supported") as info:
        load_checkpoint(save_like_ultralytics(model, tmp_path / "fork.pt"))
    assert "\n" not in str(info.value)
