"""One int8 tensor's error against its fp32 twin, and the report over all of them."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

PERCENTILE = 99.99
LOW_SQNR_DB = 20.0
INT8_MIN, INT8_MAX = -128, 127


@dataclass
class TensorStats:
    """One int8 tensor against its fp32 twin, summed over every image."""

    name: str
    reference: str  # name of the fp32 tensor it was compared with
    op: str
    shape: list[int]
    scale: float | None
    zero_point: int | None
    concat: str = ""  # "in" / "out" / "in+out" when a Concatenation forces this tensor's scale
    head: int | None = None  # stride, for the model's outputs
    inputs: list[str] = field(default_factory=list)  # the compared tensors its op reads
    drop_db: float | None = None  # worst input's SQNR minus this one's: the error this op adds itself
    values: int = 0
    signal_power: float = 0.0
    error_power: float = 0.0
    abs_error_sum: float = 0.0
    abs_signal_sum: float = 0.0
    clipped: int = 0
    min: float = math.inf
    max: float = -math.inf
    _top: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32), repr=False)

    @property
    def sqnr_db(self) -> float:
        if self.error_power == 0.0:
            return math.inf
        if self.signal_power == 0.0:
            return -math.inf
        return 10.0 * math.log10(self.signal_power / self.error_power)

    @property
    def relative_error(self) -> float:
        """Mean |int8 - fp32| over mean |fp32|."""
        return self.abs_error_sum / self.abs_signal_sum if self.abs_signal_sum else (0.0 if not self.abs_error_sum else math.inf)

    @property
    def error_steps(self) -> float | None:
        """RMS error in quantization steps: about 0.29 is rounding alone, more is error carried in."""
        if not self.scale or not self.values:
            return None
        return math.sqrt(self.error_power / self.values) / self.scale

    @property
    def step_ratio(self) -> float | None:
        """The int8 step over the step this tensor's own range on these images would need.

        Above 1 when calibration saw a wider range than these images, or when a Concatenation forces
        the union of its inputs' ranges onto each of them.
        """
        own = (max(self.max, 0.0) - min(self.min, 0.0)) / (INT8_MAX - INT8_MIN)  # int8 ranges hold 0
        if not self.scale or not own or not self.values:
            return None
        return self.scale / own

    @property
    def clipped_fraction(self) -> float:
        return self.clipped / self.values if self.values else 0.0

    @property
    def percentile_abs(self) -> float:
        """The 99.99th percentile of |fp32| over all values (numpy's linear interpolation)."""
        n = self.values
        if not n:
            return 0.0
        position = PERCENTILE / 100.0 * (n - 1)
        below = math.floor(position)
        top = np.sort(self._top)  # the largest values, ascending; index i is rank n - len + i
        first = n - len(top)
        low = float(top[below - first])
        high = float(top[min(below + 1, n - 1) - first])
        return low + (high - low) * (position - below)

    @property
    def outlier_ratio(self) -> float:
        """max |x| / 99.99th percentile: how much of the int8 range only a few outliers use."""
        peak = max(abs(self.min), abs(self.max))
        pct = self.percentile_abs
        return peak / pct if pct else (1.0 if not peak else math.inf)

    def add(self, reference: np.ndarray, approx: np.ndarray, total_values: int) -> None:
        ref = reference.astype(np.float64).ravel()
        err = approx.astype(np.float64).ravel() - ref
        self.values += ref.size
        self.signal_power += float(ref @ ref)
        self.error_power += float(err @ err)
        self.abs_error_sum += float(np.abs(err).sum())
        self.abs_signal_sum += float(np.abs(ref).sum())
        self.min = min(self.min, float(ref.min()))
        self.max = max(self.max, float(ref.max()))
        if self.scale:
            low = (INT8_MIN - self.zero_point - 0.5) * self.scale
            high = (INT8_MAX - self.zero_point + 0.5) * self.scale
            self.clipped += int(np.count_nonzero((ref < low) | (ref > high)))
        # keep just enough of the largest |x| to read the percentile over all images exactly
        keep = total_values - math.floor(PERCENTILE / 100.0 * (total_values - 1))
        magnitude = np.abs(reference.ravel()).astype(np.float32)
        pool = np.concatenate([self._top, magnitude])
        self._top = np.partition(pool, len(pool) - keep)[len(pool) - keep:] if len(pool) > keep else pool

    def as_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        for key in ("min", "max"):
            out[key] = out[key] if math.isfinite(out[key]) else None
        out.update(sqnr_db=_json_float(self.sqnr_db), relative_error=_json_float(self.relative_error),
                   error_steps=self.error_steps, step_ratio=self.step_ratio, clipped_fraction=self.clipped_fraction,
                   percentile_abs=self.percentile_abs, percentile=PERCENTILE,
                   outlier_ratio=_json_float(self.outlier_ratio))
        del out["signal_power"], out["error_power"], out["abs_error_sum"], out["abs_signal_sum"]
        return out


@dataclass
class Report:
    int8: str
    fp32: str
    images: int
    tensors: list[TensorStats]  # intermediate tensors, worst SQNR first
    heads: list[TensorStats]  # the model's outputs, by stride
    matched_by_name: int
    matched_through_wrapper: int
    unmatched: list[str]

    def drops(self) -> list[TensorStats]:
        """Tensors by the SQNR their own op loses, largest first."""
        return sorted((t for t in self.tensors if t.drop_db is not None), key=lambda t: -t.drop_db)

    def below(self, db: float = LOW_SQNR_DB) -> list[TensorStats]:
        return [t for t in self.tensors if t.sqnr_db < db]

    def summary(self) -> str:
        if not self.tensors:
            return "no tensors compared"
        worst = self.tensors[0]
        adds = next(iter(self.drops()), None)
        added = f"largest drop: {short_name(adds.name)} ({adds.op}) {adds.drop_db:.1f} dB; " if adds else ""
        heads = ", ".join(f"stride {h.head} {db_text(h.sqnr_db)}" for h in self.heads)
        return (f"worst: {short_name(worst.name)} ({worst.op}) {db_text(worst.sqnr_db)} dB; "
                f"{len(self.below())} of {len(self.tensors)} tensors below {LOW_SQNR_DB:.0f} dB; {added}"
                f"heads: {heads} dB")

    def as_dict(self) -> dict:
        return {
            "int8": self.int8, "fp32": self.fp32, "images": self.images, "summary": self.summary(),
            "matched_by_name": self.matched_by_name, "matched_through_wrapper": self.matched_through_wrapper,
            "unmatched": self.unmatched, "low_sqnr_db": LOW_SQNR_DB,
            "heads": [h.as_dict() for h in self.heads], "tensors": [t.as_dict() for t in self.tensors],
        }


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


def db_text(value: float) -> str:
    return "inf" if value == math.inf else f"{value:.1f}"


def short_name(name: str) -> str:
    """onnx2tf fuses names with ';' (`add/Add;convolution;Const`): the first part identifies the tensor."""
    return name.split(";")[0].removeprefix("model/")



def set_drops(stats: list[TensorStats]) -> None:
    """SQNR lost at each tensor beyond what its inputs already carried (None when no input was compared).

    SQNR alone grows worse with depth; the drop singles out the ops that add the error.
    """
    by_name = {t.name: t for t in stats}
    for t in stats:
        inputs = [by_name[n].sqnr_db for n in t.inputs if n in by_name]
        if inputs and math.isfinite(min(inputs)) and math.isfinite(t.sqnr_db):
            t.drop_db = min(inputs) - t.sqnr_db


