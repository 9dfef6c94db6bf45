"""Label-free knowledge distillation: the unpruned model teaches its pruned copy on plain photos.

Pruning removes channels the network was using; fine-tuning brings the accuracy back. Labels are
not needed for that: the teacher's own head outputs on real images say what the student should
produce, and any folder of photos like the camera's will do. The targets are the teacher's
sigmoid outputs (box, objectness, class probabilities) at every cell and anchor:

- objectness: binary cross-entropy against the teacher's probability, counted more where the
  teacher sees an object (most cells are empty background and would otherwise dominate);
- box (sigmoid x, y, w, h) and classes: only meaningful where there is an object, so weighted by
  the teacher's objectness.

Each cross-entropy has the target's own entropy subtracted (that is the KL divergence): the loss is
0 when the student matches, which makes progress readable in the log.

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
import torch.nn.functional as F

from convert.calibration import find_images, letterboxed_images
from convert.checkpoint import load_checkpoint, save_checkpoint
from convert.errors import ConvertError
from convert.progress import progress
from convert.prune import check_student
from convert.yolo_model import YOLOv5

log = logging.getLogger(__name__)

STATE_KEY = "distill"
KEPT_KEY = "kept_channels"  # written by `edge-convert prune`, carried along by distill
OBJ_FLOOR = 0.05      # weight of a background cell relative to a cell the teacher is sure about
GAINS = {"obj": 1.0, "box": 5.0, "cls": 1.0, "feat": 1.0}
# The convolution whose output is a block's output, by block type (see `feature_pairs`).
BLOCK_OUTPUT = {"Conv": "conv", "C3": "cv3.conv", "SPPF": "cv2.conv"}
FINAL_LR_FRACTION = 0.05
WARMUP_STEPS = 50
WEIGHT_DECAY = 5e-4
PROB_EPS = 1e-6
# Peak rate: 1e-3 undid more than it taught in the first hundred steps on a pruned yolov5n; 3e-4 did not.
DEFAULT_LR = 3e-4


@dataclass(frozen=True)
class DistillConfig:
    imgsz: tuple[int, int]
    epochs: int
    batch: int = 8
    lr: float = DEFAULT_LR
    seed: int = 0
    flip: bool = True

    def check(self):
        if self.epochs < 1:
            raise ConvertError(f"--epochs {self.epochs} must be at least 1")
        if self.batch < 1:
            raise ConvertError(f"--batch {self.batch} must be at least 1")
        if not self.lr > 0:
            raise ConvertError(f"--lr {self.lr} must be positive")


# ---------------------------------------------------------------------------------------------- loss

def _split(raw: torch.Tensor, na: int) -> torch.Tensor:
    """`[B, na*no, H, W]` logits → `[B, na, H, W, no]`."""
    b, c, h, w = raw.shape
    return raw.view(b, na, c // na, h, w).permute(0, 1, 3, 4, 2)


def _soft_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Element-wise KL between Bernoulli(target) and Bernoulli(sigmoid(logits)): 0 when they match."""
    t = target.clamp(PROB_EPS, 1 - PROB_EPS)
    entropy = -(t * t.log() + (1 - t) * (1 - t).log())
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none") - entropy


def distill_loss(student_out: list[torch.Tensor], teacher_out: list[torch.Tensor],
                 na: int) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of the student's raw head logits against the teacher's, and its parts for the log."""
    parts = {"obj": 0.0, "box": 0.0, "cls": 0.0}
    total = student_out[0].new_zeros(())
    for s_raw, t_raw in zip(student_out, teacher_out):
        s, t = _split(s_raw, na), torch.sigmoid(_split(t_raw.detach(), na))
        t_obj = t[..., 4]
        obj_w = t_obj + OBJ_FLOOR
        obj = (_soft_bce(s[..., 4], t_obj) * obj_w).sum() / obj_w.sum()
        norm = t_obj.sum().clamp_min(1.0)
        box = ((torch.sigmoid(s[..., :4]) - t[..., :4]).pow(2).sum(-1) * t_obj).sum() / norm
        cls = (_soft_bce(s[..., 5:], t[..., 5:]).mean(-1) * t_obj).sum() / norm if s.shape[-1] > 5 \
            else s.new_zeros(())
        level = {"obj": obj, "box": box, "cls": cls}
        for k, v in level.items():
            total = total + GAINS[k] * v / len(student_out)
            parts[k] += float(v.detach()) / len(student_out)
    return total, parts


def feature_pairs(student: YOLOv5, kept_channels: dict | None) -> list[tuple[int, torch.Tensor]]:
    """(block index, the teacher channels the student's are) for every block output.

    A pruned channel keeps its weights, so student channel j still is teacher channel kept[j]:
    the teacher's feature maps are targets for every block, not only for the heads, without
    learned adapters. Empty when the student did not come with the map (no feature loss then).
    """
    if not kept_channels:
        return []
    shapes, pairs = student.channel_shapes(), []
    for index, spec in enumerate(student.layers):
        name = f"model.{index}.{BLOCK_OUTPUT[spec.module]}" if spec.module in BLOCK_OUTPUT else None
        if name in kept_channels:
            if len(kept_channels[name]) != shapes[name][0]:
                raise ConvertError(f"the student's channel map says {name} kept {len(kept_channels[name])} "
                                   f"channels, it has {shapes[name][0]}: the checkpoint was edited")
            pairs.append((index, torch.as_tensor(kept_channels[name], dtype=torch.long)))
    return pairs


class BlockOutputs:
    """Records the outputs of chosen blocks during a forward pass (a context manager)."""

    def __init__(self, model: YOLOv5, indices: list[int]):
        self.model, self.indices, self.outputs, self.hooks = model, indices, {}, []

    def __enter__(self) -> dict[int, torch.Tensor]:
        for i in self.indices:
            self.hooks.append(self.model.model[i].register_forward_hook(
                lambda module, inputs, output, i=i: self.outputs.__setitem__(i, output)))
        return self.outputs

    def __exit__(self, *exc):
        for hook in self.hooks:
            hook.remove()


def feature_loss(student_feats: dict, teacher_feats: dict, pairs: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
    """Mean squared error to the teacher's kept channels, over each block's variance (scale-free)."""
    total = next(iter(student_feats.values())).new_zeros(())
    for index, kept in pairs:
        target = teacher_feats[index].index_select(1, kept)
        total = total + (student_feats[index] - target).pow(2).mean() / target.var().clamp_min(PROB_EPS)
    return total / len(pairs)


# ---------------------------------------------------------------------------------------------- data

def load_image_cache(folder: Path, imgsz_hw: tuple[int, int]) -> np.ndarray:
    """Every readable image of the folder letterboxed as the device does it: `[N, H, W, 3]` uint8 RGB.

    Kept in memory as uint8 (700 images at 320 take 215 MB), so epochs after the first decode nothing.
    """
    paths = find_images(Path(folder))
    if not paths:
        raise ConvertError(f"no images found in {folder}: distillation needs a folder of .jpg/.png "
                           "photos like the ones the camera will see")
    images, _ = letterboxed_images(paths, imgsz_hw, "loading images")
    if not images:
        raise ConvertError(f"none of the {len(paths)} images in {folder} could be read: check the files")
    return np.stack(images)


def epoch_batches(n_images: int, batch: int, seed: int, epoch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (indices, flip flags) of each batch of one epoch, fixed by seed and epoch alone.

    A trailing batch smaller than half the batch size is dropped: its batch-norm statistics are noise.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n_images)
    flips = rng.random(n_images) < 0.5
    batch = min(batch, n_images)
    starts = [s for s in range(0, n_images, batch) if n_images - s >= max(1, batch // 2)]
    return [(order[s:s + batch], flips[s:s + batch]) for s in starts]


def to_tensor(images_nhwc: np.ndarray, flips: np.ndarray | None = None) -> torch.Tensor:
    x = torch.from_numpy(images_nhwc).permute(0, 3, 1, 2).float().div_(255.0)
    if flips is not None and flips.any():
        mask = torch.from_numpy(flips)
        x[mask] = x[mask].flip(-1)
    return x.contiguous()


# ---------------------------------------------------------------------------------------------- training

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


def train_step(student: YOLOv5, teacher: YOLOv5, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               pairs: list[tuple[int, torch.Tensor]] | None = None) -> tuple[float, dict[str, float]]:
    """One optimizer step on the head outputs, plus the block outputs named by `pairs` if any."""
    indices = [i for i, _ in pairs or []]
    with torch.no_grad(), BlockOutputs(teacher, indices) as teacher_feats:
        target = teacher(x)
    with BlockOutputs(student, indices) as student_feats:
        out = student(x)
    loss, parts = distill_loss(out, target, teacher.detect.na)
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
    check_student(teacher, student, str(student_ckpt.path))
    student.kept_channels = student_ckpt.extra.get(KEPT_KEY)
    pairs = feature_pairs(student, student.kept_channels)
    if not pairs:
        log.warning("%s has no channel map (not written by this version of prune): distilling the "
                    "head outputs only, which recovers less", student_ckpt.path)

    cache = load_image_cache(images, config.imgsz)
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
        return _finish(student, out, config, teacher_ckpt, position)

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
                x = to_tensor(cache[indices], flips if config.flip else None)
                loss, parts = train_step(student, teacher, optimizer, x, pairs)
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
            _save(student, optimizer, out, config, teacher_ckpt, position, len(cache))
    except KeyboardInterrupt:
        _save(student, optimizer, out, config, teacher_ckpt, position, len(cache))
        log.warning("interrupted: %s holds epoch %d + %d batches; continue with --resume",
                    out, position.epoch, position.batch)
        raise
    return _finish(student, out, config, teacher_ckpt, position)


def _check_resume(state: dict, config: DistillConfig, teacher_sha: str, out: Path):
    saved = state.get("config", {})
    if state.get("teacher_sha256") != teacher_sha:
        raise ConvertError(f"--resume: {out} was distilled from a different teacher: pass the same --teacher")
    for key in ("imgsz", "epochs", "batch", "seed", "lr"):
        value = getattr(config, key)
        if key in saved and tuple(np.atleast_1d(saved[key])) != tuple(np.atleast_1d(value)):
            raise ConvertError(f"--resume: {out} was started with {key}={saved[key]}, now {value}: "
                               "resume with the same settings")


def _save(student, optimizer, out, config, teacher_ckpt, position: Position, n_images: int):
    """Weights and full training state in one file, replaced atomically (never half-written)."""
    state = {"position": asdict(position), "optimizer": optimizer.state_dict(),
             "config": {**asdict(config), "imgsz": list(config.imgsz)},
             "teacher_sha256": teacher_ckpt.sha256, "teacher": teacher_ckpt.path.name, "images": n_images}
    save_checkpoint(student, out, **{STATE_KEY: state, KEPT_KEY: getattr(student, KEPT_KEY, None)})


def _finish(student, out, config, teacher_ckpt, position: Position) -> Path:
    """The final file without optimizer state: a third of the size, and it is a model, not a job."""
    save_checkpoint(student.eval(), out, **{KEPT_KEY: getattr(student, KEPT_KEY, None)}, distilled={
        "teacher": teacher_ckpt.path.name, "teacher_sha256": teacher_ckpt.sha256,
        "epochs": position.epoch, "config": {**asdict(config), "imgsz": list(config.imgsz)}})
    return out
