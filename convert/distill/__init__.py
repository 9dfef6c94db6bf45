"""Label-free distillation of a pruned model toward the original (see `convert.distill.train`)."""
from convert.distill.data import epoch_batches, load_image_cache, to_tensor
from convert.distill.loss import BlockOutputs, distill_loss, feature_loss, feature_pairs
from convert.distill.train import (CARRIED, DEFAULT_LR, DEPTH_KEY, KEPT_KEY, STATE_KEY, DistillConfig, distill,
                                   make_optimizer, train_mode, train_step)

__all__ = ["BlockOutputs", "CARRIED", "DEFAULT_LR", "DEPTH_KEY", "DistillConfig", "KEPT_KEY", "STATE_KEY",
           "distill", "distill_loss", "epoch_batches", "feature_loss", "feature_pairs", "load_image_cache",
           "make_optimizer", "to_tensor", "train_mode", "train_step"]
