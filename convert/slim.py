"""`slim`: make lighter variants of a model, measure them all, and choose one within a score budget.

Each variant is pruned and refitted (`convert.prune.pipeline`), optionally trained block by block
and distilled, then exported to int8. The original is exported at several smaller inputs as well:
the curve a variant must beat. Every step writes its product into the output folder and is skipped
when that product is already there, so an interrupted run continues where it stopped.

A user has no labels, so the choice is made on a score the user's own photos give: agreement with
the original's detections on the held-out part (`convert.pseudo_map`). Labelled data, if given,
is measured for the report only and never decides anything.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace

from convert.curve import Variant
from convert.errors import ConvertError
from convert.prune.pipeline import PruneSpec
from convert.variants import PSEUDO_KEY

log = logging.getLogger(__name__)

DEFAULT_SIZES = (288, 256, 224)
_FIELDS = {"ratio": float, "depth": int, "drop": str, "method": str, "reconstruct": str}


@dataclass(frozen=True)
class VariantSpec:
    """A named pruning recipe, written on the command line as `depth=4,ratio=0.3`."""

    name: str
    prune: PruneSpec


def parse_variant(text: str, base: PruneSpec) -> VariantSpec:
    """`ratio=0.3`, `depth=4,ratio=0.3`, `drop=4.1+6.2` → a spec (other settings from `base`)."""
    values = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        if not sep or key not in _FIELDS:
            raise ConvertError(f"--variant {text!r}: {part!r} is not KEY=VALUE with KEY one of {', '.join(_FIELDS)}")
        try:
            values[key] = _FIELDS[key](value.replace("+", ",") if key == "drop" else value)
        except ValueError:
            raise ConvertError(f"--variant {text!r}: {value!r} is not a valid {key}") from None
    if not values:
        raise ConvertError(f"--variant {text!r} says nothing to remove: e.g. ratio=0.3 or depth=4,ratio=0.3")
    name = re.sub(r"[^A-Za-z0-9.=_-]+", "_", text.replace(",", "_"))
    return VariantSpec(name, replace(base, **values))


def drop_of(variant: Variant, reference: Variant, key: str = PSEUDO_KEY) -> float:
    return reference.scores[key] - variant.scores[key]


def choose(variants: list[Variant], reference: Variant, max_drop: float, key: str = PSEUDO_KEY) -> Variant | None:
    """The fastest variant whose score is at most `max_drop` points below the reference's."""
    if max_drop < 0:
        raise ConvertError(f"--max-drop {max_drop} is negative: give the points of score you accept to lose, e.g. 5")
    within = [v for v in variants if v is not reference and drop_of(v, reference, key) <= max_drop]
    return min(within, key=lambda v: v.latency_ms, default=None)


def explain(chosen: Variant | None, reference: Variant, max_drop: float, held_out: int, boxes: int) -> str:
    """What the choice and its figure mean, in words."""
    meaning = (f"Score: mAP50-95 of each int8 model against the original's own detections (confidence >= 0.25) "
               f"on {held_out} held-out photos of yours ({boxes} boxes); the original at full size scores "
               f"{reference.scores[PSEUDO_KEY]:.2f}. It measures agreement with the original, not accuracy against "
               "ground truth: a point of it is much smaller than a point of real mAP (on COCO, running the original "
               "at 288 instead of 320 costs about 33 of these points and 1.5 real ones).")
    if chosen is None:
        return f"{meaning}\nNo variant is within {max_drop} points of the original: keep the original (or allow a larger --max-drop)."
    return (f"{meaning}\nChosen: {chosen.label} ({chosen.model}), {reference.latency_ms / chosen.latency_ms:.2f}x "
            f"the original's int8 speed, {drop_of(chosen, reference):.2f} points below it (limit {max_drop}).")
