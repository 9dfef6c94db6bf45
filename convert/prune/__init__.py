"""Structured pruning of YOLOv5: fewer channels (channels), fewer bottlenecks (depth), and the
weights of what remains refitted to the original's outputs on real photos (reconstruct)."""
from convert.prune.channels import (DEFAULT_ROUND_TO, check_ratio, layer_ratio, prune_model,
                                    prune_to_cost)
from convert.prune.cost import Cost, measure
from convert.prune.importance import DEFAULT_METHOD, METHODS, importance_for
from convert.prune.stats import STATS_IMAGES, input_stats, stats_images
from convert.prune.student import check_student

__all__ = ["Cost", "DEFAULT_METHOD", "DEFAULT_ROUND_TO", "METHODS", "STATS_IMAGES", "check_ratio",
           "check_student", "importance_for", "input_stats", "layer_ratio", "measure", "prune_model",
           "prune_to_cost", "stats_images"]
