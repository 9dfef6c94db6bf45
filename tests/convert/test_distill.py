"""Distillation: a step moves the student toward the teacher; interrupted runs resume exactly."""
from __future__ import annotations

import copy
import shutil

import pytest
import torch

import convert.distill.train as distill_module
from convert.checkpoint import load_checkpoint, save_checkpoint
from convert.cli import main
from convert.distill import (KEPT_KEY, STATE_KEY, BlockOutputs, DistillConfig, distill, distill_loss,
                             feature_loss, feature_pairs, load_image_cache, make_optimizer, to_tensor,
                             train_mode, train_step)
from convert.errors import ConvertError
from convert.prune import prune_model

IMGSZ = (128, 128)


@pytest.fixture(scope="module")
def pruned(yolov5n):
    return prune_model(yolov5n.model, 0.3, "l1", imgsz_hw=IMGSZ)


@pytest.fixture(scope="module")
def pruned_pt(pruned, tmp_path_factory):
    return save_checkpoint(pruned, tmp_path_factory.mktemp("student") / "pruned.pt",
                           **{KEPT_KEY: pruned.kept_channels})


@pytest.fixture(scope="module")
def few_images(shared, tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for path in sorted((shared / "data" / "pool" / "images").glob("*.jpg"))[:6]:
        shutil.copy(path, folder / path.name)
    return folder


def test_loss_is_zero_for_the_teacher_itself(yolov5n, few_images):
    x = to_tensor(load_image_cache(few_images, IMGSZ)[:2])
    with torch.no_grad():
        out = yolov5n.model.eval()(x)
        loss, _ = distill_loss(out, [torch.sigmoid(o) for o in out], yolov5n.model.detect.na)
    assert abs(float(loss)) < 1e-4


def test_feature_loss_is_zero_for_the_teacher_and_not_for_its_pruned_copy(yolov5n, pruned, few_images):
    teacher = yolov5n.model.eval()
    x = to_tensor(load_image_cache(few_images, IMGSZ)[:2])
    identity = {n: list(range(c)) for n, (c, _) in teacher.channel_shapes().items()}
    for student, kept in ((teacher, identity), (pruned.eval(), pruned.kept_channels)):
        pairs = feature_pairs(student, kept)
        indices = [i for i, _ in pairs]
        with torch.no_grad(), BlockOutputs(teacher, indices) as t_feats, BlockOutputs(student, indices) as s_feats:
            teacher(x), student(x)
        value = float(feature_loss(s_feats, t_feats, pairs))
        assert (value < 1e-6) == (student is teacher), value


@pytest.mark.parametrize("with_features", [False, True])
def test_distillation_steps_lower_the_loss_on_a_fixed_batch(yolov5n, pruned, few_images, with_features):
    torch.manual_seed(0)
    teacher = yolov5n.model.eval()
    student = copy.deepcopy(pruned)
    pairs = feature_pairs(student, pruned.kept_channels) if with_features else None
    x = to_tensor(load_image_cache(few_images, IMGSZ)[:4])

    def eval_loss():
        student.eval()
        with torch.no_grad():
            value, _ = distill_loss(student(x), [torch.sigmoid(o) for o in teacher(x)], teacher.detect.na)
        train_mode(student)
        return float(value)

    before = eval_loss()
    optimizer = make_optimizer(train_mode(student), 1e-3)
    for _ in range(5):
        _, parts = train_step(student, optimizer, x, teacher=teacher, pairs=pairs)
        assert ("feat" in parts) == with_features
    assert eval_loss() < 0.9 * before


def test_training_keeps_the_batch_norm_statistics(yolov5n, pruned, few_images):
    """The statistics are frozen (see `train_mode`); the weights, scales and shifts do move."""
    student = train_mode(copy.deepcopy(pruned))
    before = copy.deepcopy(student.state_dict())
    optimizer = make_optimizer(student, 1e-3)
    train_step(student, optimizer, to_tensor(load_image_cache(few_images, IMGSZ)[:3]), teacher=yolov5n.model.eval())
    after = student.state_dict()
    stats = [k for k in after if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(after[k], before[k]) for k in stats)
    assert not torch.equal(after["model.0.bn.weight"], before["model.0.bn.weight"])


def _run(teacher_pt, student_pt, images, out, resume=False, epochs=2):
    config = DistillConfig(imgsz=IMGSZ, epochs=epochs, batch=3, lr=1e-3, seed=3)
    return distill(teacher_pt, student_pt, images, out, config, resume=resume, threads=1)


def test_interrupted_run_resumes_to_the_same_weights(yolov5n_pt, pruned_pt, few_images, tmp_path, monkeypatch):
    straight = _run(yolov5n_pt, pruned_pt, few_images, tmp_path / "straight.pt")

    real_step, calls = distill_module.train_step, []

    def interrupt_on_third(*args):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return real_step(*args)

    monkeypatch.setattr(distill_module, "train_step", interrupt_on_third)
    stopped = tmp_path / "stopped.pt"
    with pytest.raises(KeyboardInterrupt):
        _run(yolov5n_pt, pruned_pt, few_images, stopped)
    state = load_checkpoint(stopped).extra[STATE_KEY]
    assert state["position"] == {"epoch": 1, "batch": 1, "step": 3}  # 6 images / batch 3 = 2 per epoch
    monkeypatch.setattr(distill_module, "train_step", real_step)

    _run(yolov5n_pt, None, few_images, stopped, resume=True)
    a, b = load_checkpoint(straight), load_checkpoint(stopped)
    assert b.extra["distilled"]["epochs"] == 2 and STATE_KEY not in b.extra
    assert a.extra[KEPT_KEY] == load_checkpoint(pruned_pt).extra[KEPT_KEY]  # a distilled model can be distilled again
    start = load_checkpoint(pruned_pt).model.state_dict()
    assert not torch.equal(a.model.state_dict()["model.0.conv.weight"], start["model.0.conv.weight"])
    for key, value in a.model.state_dict().items():
        torch.testing.assert_close(b.model.state_dict()[key], value, rtol=0, atol=1e-6, msg=key)


def test_resume_with_other_settings_is_refused(yolov5n_pt, pruned_pt, few_images, tmp_path, monkeypatch):
    monkeypatch.setattr(distill_module, "train_step", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    out = tmp_path / "d.pt"
    with pytest.raises(KeyboardInterrupt):
        _run(yolov5n_pt, pruned_pt, few_images, out)
    with pytest.raises(ConvertError, match="epochs"):
        _run(yolov5n_pt, None, few_images, out, resume=True, epochs=5)


def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edge-convert: error:") and "\n" not in err
    return err


def test_empty_image_folder_is_one_clear_error(yolov5n_pt, pruned_pt, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    err = _cli_error(capsys, ["distill", "--teacher", str(yolov5n_pt), "--student", str(pruned_pt),
                              "--images", str(tmp_path / "empty"), "--imgsz", "128", "--epochs", "1",
                              "--out", str(tmp_path / "d.pt")])
    assert "no images found" in err


def test_student_from_another_model_is_one_clear_error(yolov5n_pt, few_images, tmp_path, capsys):
    from convert.yolo_model import build_model, yolov5_yaml

    other = save_checkpoint(build_model(yolov5_yaml("n", nc=3)), tmp_path / "other.pt")
    err = _cli_error(capsys, ["distill", "--teacher", str(yolov5n_pt), "--student", str(other),
                              "--images", str(few_images), "--imgsz", "128", "--epochs", "1",
                              "--out", str(tmp_path / "d.pt")])
    assert "not a pruned form of the teacher" in err

