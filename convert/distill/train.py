"""Label-free knowledge distillation: the unpruned model teaches its pruned copy on plain photos.

Pruning removes channels the network was using; fine-tuning brings the accuracy back. Labels are
not needed for that: the teacher's own head outputs on real images say what the student should
produce (`convert.distill.loss`), and any folder of photos like the camera's will do. The
teacher's outputs are computed once per image and mirror image (`convert.teacher_cache`) unless
its block outputs are wanted too (`live_teacher`), which needs it running beside the student.

Training state (weights, optimizer, position in the epoch) is written atomically after every epoch
and on Ctrl-C, and `resume` continues from it exactly: data order and flips come from the seed and
the epoch number, the learning rate from the step number.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from convert.checkpoint import load_checkpoint, save_checkpoint
from convert.distill.data import epoch_batches, load_image_cache, to_tensor
from convert.distill.loss import GAINS, BlockOutputs, distill_loss, feature_loss, feature_pairs
from convert.errors import ConvertError
from convert.progress import progress
from convert.prune import check_student
from convert.teacher_cache import cache_key, teacher_cache
from convert.yolo_model import YOLOv5

log = logging.getLogger(__name__)

STATE_KEY = "distill"
KEPT_KEY = "kept_channels"  # written by `edge-convert prune`, carried along by distill
DEPTH_KEY = "depth"  # which original bottlenecks a depth-pruned model kept, carried along too
CARRIED = (KEPT_KEY, DEPTH_KEY)
FINAL_LR_FRACTION = 0.05
WARMUP_STEPS = 50
WEIGHT_DECAY = 5e-4
# Peak rate. From a least-squares refit of yolov5n pruned by a third, 2 epochs at 1e-4 raised the
# held-out agreement from 11.9 to 15.4, while 3 epochs at 3e-4 lowered it to 10.1 (undoing the refit).
DEFAULT_LR = 1e-4


@dataclass(frozen=True)
class DistillConfig:
    imgsz: tuple[int, int]
    epochs: int
    batch: int = 8
    lr: float = DEFAULT_LR
    seed: int = 0
    flip: bool = True
    live_teacher: bool = False  # run the teacher every step, for the block-output (feature) term

    def check(self):
        if self.epochs < 1:
            raise ConvertError(f"--epochs {self.epochs} must be at least 1")
        if self.batch < 1:
            raise ConvertError(f"--batch {self.batch} must be at least 1")
        if not self.lr > 0:
            raise ConvertError(f"--lr {self.lr} must be positive")


def make_optimizer(student: YOLOv5, lr: float) -> torch.optim.Optimizer:
    """AdamW; decay on convolution weights only (decaying batch-norm scales would prune by stealth)."""
    decay = [p for n, p in student.named_parameters() if p.dim() > 1]
    rest = [p for n, p in student.named_parameters() if p.dim() <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                              {"params": rest, "weight_decay": 0.0}], lr=lr)


def lr_at(step: int, total_steps: int, base_lr: float) -> float:
    """Linear warm-up, then cosine down to FINAL_LR_FRACTION of the base rate."""
    if step < WARMUP_STEPS:
        return base_lr * (step + 1) / WARMUP_STEPS
    progress_frac = min(1.0, (step - WARMUP_STEPS) / max(1, total_steps - WARMUP_STEPS))
    return base_lr * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress_frac)))


def train_step(student: YOLOv5, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               targets: list[torch.Tensor] | None = None, teacher: YOLOv5 | None = None,
               pairs: list[tuple[int, torch.Tensor]] | None = None) -> tuple[float, dict[str, float]]:
    """One optimizer step toward the teacher's head probabilities: `targets` when cached, else the
    live `teacher`'s outputs on `x`, plus its block outputs named by `pairs` if any."""
    indices = [i for i, _ in pairs or []]
    teacher_feats: dict = {}
    if targets is None:
        with torch.no_grad(), BlockOutputs(teacher, indices) as teacher_feats:
            targets = [torch.sigmoid(o) for o in teacher(x)]
    with BlockOutputs(student, indices) as student_feats:
        out = student(x)
    loss, parts = distill_loss(out, targets, student.detect.na)
    if pairs:
        feat = feature_loss(student_feats, teacher_feats, pairs)
        loss = loss + GAINS["feat"] * feat
        parts["feat"] = float(feat.detach())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach()), parts


def train_mode(student: YOLOv5) -> YOLOv5:
    """Training mode with the batch-norm statistics frozen.

    The statistics came from the original training (640-pixel mosaics); re-estimating them from
    a few hundred letterboxed photos in batches of 8 moves them away from what the weights expect
    (re-estimating them on the unpruned yolov5n alone costs it 4 mAP points). Pruning already
    corrected the means for the removed channels; the scales and shifts still learn.
    """
    student.train()
    for module in student.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    return student


@dataclass
class Position:
    """Where training stands: `epoch` epochs complete, plus `batch` batches into the next one."""
    epoch: int = 0
    batch: int = 0
    step: int = 0


def distill(teacher_path: Path, student_path: Path | None, images: Path, out: Path,
            config: DistillConfig, resume: bool = False, threads: int | None = None) -> Path:
    """Fine-tune the student toward the teacher on the images; write `out` (own format) each epoch."""
    config.check()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    teacher_ckpt = load_checkpoint(teacher_path)
    teacher = teacher_ckpt.model.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    position = Position()
    if resume:
        if not out.is_file():
            raise ConvertError(f"--resume: {out} does not exist yet: start without --resume")
        student_ckpt = load_checkpoint(out)
        state = student_ckpt.extra.get(STATE_KEY)
        if not isinstance(state, dict) or "optimizer" not in state:
            raise ConvertError(f"--resume: {out} holds no resumable training state "
                               "(it finished, or was not written by distill): distill again from it as --student")
        _check_resume(state, config, teacher_ckpt.sha256, out)
        position = Position(**state["position"])
    else:
        if student_path is None:
            raise ConvertError("--student is required (a checkpoint written by `edge-convert prune`)")
        student_ckpt = load_checkpoint(student_path)
        state = None
    student = student_ckpt.model
    check_student(teacher, student, str(student_ckpt.path), student_ckpt.extra.get(DEPTH_KEY))
    carried = {k: student_ckpt.extra.get(k) for k in CARRIED}
    pairs = feature_pairs(student, carried[KEPT_KEY]) if config.live_teacher else []
    if config.live_teacher and not pairs:
        log.warning("%s has no channel map (not written by this version of prune): distilling the "
                    "head outputs only", student_ckpt.path)

    cache = load_image_cache(images, config.imgsz)
    cached = None if config.live_teacher else teacher_cache(
        teacher, cache, out.parent / f".{out.stem}-teacher", cache_key(teacher_ckpt.sha256, config.imgsz, cache))
    if state is not None and state.get("images", len(cache)) != len(cache):
        raise ConvertError(f"--resume: {out} was started on {state['images']} images, {images} now has "
                           f"{len(cache)}: resume with the same --images")
    per_epoch = len(epoch_batches(len(cache), config.batch, config.seed, 0))
    total_steps = per_epoch * config.epochs
    optimizer = make_optimizer(student, config.lr)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    if position.epoch >= config.epochs:
        log.info("%s already has %d of %d epochs", out, position.epoch, config.epochs)
        return _finish(student, out, config, teacher_ckpt, position, carried)

    train_mode(student)
    torch.manual_seed(config.seed)
    log.info("distilling %s → %s on %d images, %d batches per epoch", teacher_path.name,
             out.name, len(cache), per_epoch)
    try:
        while position.epoch < config.epochs:
            batches = epoch_batches(len(cache), config.batch, config.seed, position.epoch)
            bar = progress(batches[position.batch:], desc=f"epoch {position.epoch + 1}/{config.epochs}",
                           total=len(batches) - position.batch, unit="batch")
            started, seen, running = time.perf_counter(), 0, None
            for indices, flips in bar:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(position.step, total_steps, config.lr)
                flips = flips if config.flip else np.zeros_like(flips)
                x = to_tensor(cache[indices], flips)
                targets = None if cached is None else cached.targets(indices, flips)
                loss, parts = train_step(student, optimizer, x, targets, teacher, pairs)
                if not math.isfinite(loss):
                    raise ConvertError(f"the loss became {loss} at step {position.step}: lower --lr")
                running = loss if running is None else 0.9 * running + 0.1 * loss
                seen += len(indices)
                position.batch += 1
                position.step += 1
                bar.set_postfix(loss=f"{running:.4f}", **{k: f"{v:.4f}" for k, v in parts.items()},
                                img_s=f"{seen / (time.perf_counter() - started):.1f}", refresh=False)
            bar.close()
            position = Position(epoch=position.epoch + 1, batch=0, step=position.step)
            log.info("epoch %d/%d: loss %.4f, %.1f images/s, %.0f CPU-s so far", position.epoch, config.epochs,
                     running or 0.0, seen / max(1e-9, time.perf_counter() - started), time.process_time())
            _save(student, optimizer, out, config, teacher_ckpt, position, len(cache), carried)
    except KeyboardInterrupt:
        _save(student, optimizer, out, config, teacher_ckpt, position, len(cache), carried)
        log.warning("interrupted: %s holds epoch %d + %d batches; continue with --resume",
                    out, position.epoch, position.batch)
        raise
    return _finish(student, out, config, teacher_ckpt, position, carried)


def _check_resume(state: dict, config: DistillConfig, teacher_sha: str, out: Path):
    saved = state.get("config", {})
    if state.get("teacher_sha256") != teacher_sha:
        raise ConvertError(f"--resume: {out} was distilled from a different teacher: pass the same --teacher")
    for key in ("imgsz", "epochs", "batch", "seed", "lr", "live_teacher"):
        value = getattr(config, key)
        if key in saved and tuple(np.atleast_1d(saved[key])) != tuple(np.atleast_1d(value)):
            raise ConvertError(f"--resume: {out} was started with {key}={saved[key]}, now {value}: "
                               "resume with the same settings")


def _save(student, optimizer, out, config, teacher_ckpt, position: Position, n_images: int, carried: dict):
    """Weights and full training state in one file, replaced atomically (never half-written)."""
    state = {"position": asdict(position), "optimizer": optimizer.state_dict(),
             "config": {**asdict(config), "imgsz": list(config.imgsz)},
             "teacher_sha256": teacher_ckpt.sha256, "teacher": teacher_ckpt.path.name, "images": n_images}
    save_checkpoint(student, out, **{STATE_KEY: state}, **carried)


def _finish(student, out, config, teacher_ckpt, position: Position, carried: dict) -> Path:
    """The final file without optimizer state: a third of the size, and it is a model, not a job."""
    save_checkpoint(student.eval(), out, **carried, distilled={
        "teacher": teacher_ckpt.path.name, "teacher_sha256": teacher_ckpt.sha256,
        "epochs": position.epoch, "config": {**asdict(config), "imgsz": list(config.imgsz)}})
    return out
