"""The int8 range of one tensor from its histogram: the range whose rounding and clipping cost least.

Error is measured after the function the tensor feeds (`silu` for a convolution followed by SiLU,
`sigmoid` for a detection head), because that is the error the network carries on: a SiLU input's
negative tail collapses to about zero whatever its precision, so spending levels on it is waste.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

BINS = 2048
LEVELS = 256
# Candidate ends: keep everything, or cut a tail holding this fraction of the values (1e-7 .. 5%).
TAIL_FRACTIONS = np.concatenate([[0.0], np.geomspace(1e-7, 0.05, 40)])

Transfer = Callable[[np.ndarray], np.ndarray]


def identity(x: np.ndarray) -> np.ndarray:
    return x


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def silu(x: np.ndarray) -> np.ndarray:
    return x * sigmoid(x)


def bin_centres(lo: float, hi: float) -> np.ndarray:
    edges = np.linspace(lo, hi, BINS + 1)
    return (edges[:-1] + edges[1:]) / 2


def best_range(counts: np.ndarray, lo: float, hi: float, transfer: Transfer = identity) -> tuple[float, float]:
    """`(a, b)` with `a <= 0 <= b` inside `[lo, hi]` minimising Σ count·(f(q(x)) − f(x))² over the bins.

    `counts` is a `BINS`-bin histogram over `[lo, hi]`; `q` is the asymmetric 256-level quantizer of
    `[a, b]` (zero exactly representable, as TFLite nudges it). A tensor with no spread keeps its range.
    """
    total = counts.sum()
    if total <= 0 or hi <= lo:
        return lo, hi
    centres = bin_centres(lo, hi)
    used = counts > 0
    x, weight = centres[used], counts[used]
    fx = transfer(x)
    edges = np.linspace(lo, hi, BINS + 1)
    cdf = np.cumsum(counts) / total
    lows = np.unique(np.minimum(edges[np.searchsorted(cdf, TAIL_FRACTIONS)], 0.0)) if lo < 0 else np.array([lo])
    highs = np.unique(np.maximum(edges[np.minimum(np.searchsorted(cdf, 1 - TAIL_FRACTIONS) + 1, BINS)], 0.0))
    best, best_err = (lo, hi), np.inf
    for a in lows:
        b = highs[highs > a][:, None]  # candidates × 1, against 1 × bins
        if not b.size:
            continue
        step = (b - a) / (LEVELS - 1)
        zero = np.round(-a / step)
        quantized = (np.clip(np.round(x / step) + zero, 0, LEVELS - 1) - zero) * step
        err = (weight * (transfer(quantized) - fx) ** 2).sum(axis=1)
        k = int(np.argmin(err))
        if err[k] < best_err:
            best, best_err = (float(a), float(b[k, 0])), float(err[k])
    return best
