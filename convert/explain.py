"""Which tensors of an int8 model lose the most against its fp32 twin, measured on real images.

Both TFLite files come from the same onnx2tf graph, so their activation tensors carry the same
names. Every tensor of both models is kept (`experimental_preserve_all_tensors`), the int8 one is
dequantized with its own scale and zero point, and the difference to the fp32 tensor of the same
name is the quantization error accumulated up to that point. The worst tensors point at what to fix
for a checkpoint: a range stretched by outliers, values clipped at the int8 ends, or a range forced
wide because a Concatenation makes its inputs share one scale.

The default XNNPACK delegate is left out: a delegated graph never writes its intermediate tensors,
so both models run on TFLite's built-in kernels here. Their int8 outputs differ from XNNPACK's by
rounding here and there, not in size: on yolov5n at 320 the SQNR of the heads agreed within 0.2 dB.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from convert.errors import ConvertError
from edge.errors import EdgeError
from edge.model.interpreter import read_model_file

PERCENTILE = 99.99
LOW_SQNR_DB = 20.0
DROP_ROWS = 5
INT8_MIN, INT8_MAX = -128, 127
CONCAT_OP = "CONCATENATION"
WRAPPER_OPS = ("QUANTIZE", "DEQUANTIZE")  # change only the representation, not the value
# int8 ops whose output reuses the input's scale and zero point, so a forced scale reaches back through them
SAME_SCALE_OPS = ("TRANSPOSE", "RESHAPE", "PAD", "MAX_POOL_2D", "RESIZE_NEAREST_NEIGHBOR")
LITERT_MODULE = "ai_edge_litert.interpreter"


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
        heads = ", ".join(f"stride {h.head} {_db(h.sqnr_db)}" for h in self.heads)
        return (f"worst: {short_name(worst.name)} ({worst.op}) {_db(worst.sqnr_db)} dB; "
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


def _db(value: float) -> str:
    return "inf" if value == math.inf else f"{value:.1f}"


def short_name(name: str) -> str:
    """onnx2tf fuses names with ';' (`add/Add;convolution;Const`): the first part identifies the tensor."""
    return name.split(";")[0].removeprefix("model/")


class Graph:
    """A TFLite model opened with every tensor kept, and what each activation tensor is."""

    def __init__(self, path: Path, role: str):
        self.path = Path(path)
        if not self.path.is_file():
            raise ConvertError(f"--{role} file not found: {self.path}; pass the *_{role}.tflite that "
                               "`edge-convert export` wrote")
        try:
            read_model_file(self.path)
        except EdgeError as exc:
            raise ConvertError(f"--{role}: {exc}") from None
        self.interpreter = _open(self.path, role)
        self.details = {d["index"]: d for d in self.interpreter.get_tensor_details()}
        self.ops = self.interpreter._get_ops_details()  # the only API naming the op behind a tensor
        self.producer = {int(t): op for op in self.ops for t in op["outputs"]}
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = self.interpreter.get_output_details()
        self.by_name = {self.details[i]["name"]: i for i in self.producer}

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.input["shape"])

    def is_int8(self) -> bool:
        """Full-integer: the activations are int8 with a scale (an fp16 file has float activations)."""
        return any(_quant(self.details[i]) is not None for i in self.producer)

    def feed(self, rgb: np.ndarray) -> None:
        """Write one letterboxed uint8 RGB image as this model's input expects it."""
        dtype = np.dtype(self.input["dtype"])
        if dtype == np.float32:
            value = rgb.astype(np.float32) / np.float32(255.0)
        else:
            scale, zero_point = self.input["quantization"]
            info = np.iinfo(dtype)
            value = np.clip(np.round(rgb / 255.0 / scale + zero_point), info.min, info.max).astype(dtype)
        self.interpreter.set_tensor(self.input["index"], value[None])
        self.interpreter.invoke()

    def value(self, index: int) -> np.ndarray:
        """The tensor as real numbers: int8 dequantized with its scale and zero point."""
        raw = self.interpreter.get_tensor(index)
        quant = _quant(self.details[index])
        if quant is None:
            return raw.astype(np.float32)
        scale, zero_point = quant
        return (raw.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def _quant(detail: dict) -> tuple[float, int] | None:
    if np.dtype(detail["dtype"]) not in (np.dtype(np.int8), np.dtype(np.uint8)):
        return None
    scale, zero_point = detail["quantization"]
    return (float(scale), int(zero_point)) if scale else None


def _open(path: Path, role: str):
    try:
        import importlib

        module = importlib.import_module(LITERT_MODULE)
        resolver = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        interpreter_class = module.Interpreter
    except ImportError:
        import tensorflow as tf

        resolver = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        interpreter_class = tf.lite.Interpreter
    import warnings

    try:
        with warnings.catch_warnings():  # the "debugging only" warning of preserve_all_tensors: that is the point
            warnings.simplefilter("ignore")
            interpreter = interpreter_class(model_path=str(path), experimental_preserve_all_tensors=True,
                                            experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConvertError(f"--{role}: cannot load {path}: {reason}") from None
    return interpreter


def open_pair(int8_path: Path, fp32_path: Path, require_int8: bool = True) -> tuple[Graph, Graph]:
    """Both models, refusing a pair that cannot be compared; `require_int8=False` allows a self-check."""
    quant, ref = Graph(int8_path, "int8"), Graph(fp32_path, "fp32")
    if require_int8 and not quant.is_int8():
        raise ConvertError(f"--int8 {quant.path.name} has no int8 activations (an fp32/fp16 model?): "
                           "pass the full-integer *_int8.tflite from `edge-convert export`")
    if require_int8 and ref.is_int8():
        raise ConvertError(f"--fp32 {ref.path.name} is quantized: pass the *_fp32.tflite from the same export")
    if quant.input_shape != ref.input_shape:
        raise ConvertError(f"the models take different inputs ({quant.path.name} {list(quant.input_shape)}, "
                           f"{ref.path.name} {list(ref.input_shape)}): pass the int8 and fp32 files of one export")
    return quant, ref


def _pairs(quant: Graph, ref: Graph, height: int) -> tuple[list[tuple[int, int, TensorStats]], dict]:
    """(int8 index, fp32 index, stats) for every comparable tensor, and how they were matched.

    The outputs are matched by shape (stride): onnx2tf numbers `PartitionedCall:N` differently in the
    two files. Other tensors by name; a QUANTIZE/DEQUANTIZE output without a twin (a requantized copy
    such as `Mul1`) is compared with the fp32 twin of its input.
    """
    out_ref = {tuple(d["shape"]): d["index"] for d in ref.outputs}
    output_indices = {d["index"] for d in quant.outputs}
    pairs, by_name, through_wrapper, unmatched = [], 0, 0, []
    concat = _concat_roles(quant)
    for detail in quant.outputs:
        index = detail["index"]
        twin = out_ref.get(tuple(detail["shape"]))
        if twin is None:
            unmatched.append(detail["name"])
            continue
        pairs.append((index, twin, _stats(quant, index, ref.details[twin]["name"], concat,
                                          head=height // int(detail["shape"][1]))))
    ref_outputs = {d["index"] for d in ref.outputs}
    for index in quant.producer:
        if index in output_indices:
            continue
        detail = quant.details[index]
        name, twin = detail["name"], ref.by_name.get(detail["name"])
        source = index
        while twin is None and quant.producer[source]["op_name"] in WRAPPER_OPS:
            source = int(quant.producer[source]["inputs"][0])
            twin = ref.by_name.get(quant.details[source]["name"])
        if twin is None or twin in ref_outputs or tuple(ref.details[twin]["shape"]) != tuple(detail["shape"]):
            unmatched.append(name)
            continue
        if source == index:
            by_name += 1
        else:
            through_wrapper += 1
        pairs.append((index, twin, _stats(quant, index, ref.details[twin]["name"], concat)))
    return pairs, {"matched_by_name": by_name, "matched_through_wrapper": through_wrapper, "unmatched": unmatched}


def _concat_roles(graph: Graph) -> dict[int, str]:
    """Tensors whose quantization a Concatenation forces: inputs sharing the output's scale, and the output.

    TFLite's int8 Concatenation needs every input on the output's scale and zero point, so these
    ranges are the union of all the branches (the converter inserts a QUANTIZE where it is not).
    """
    roles: dict[int, set[str]] = {}
    for op in graph.ops:
        if op["op_name"] != CONCAT_OP:
            continue
        out = int(op["outputs"][0])
        shared = _quant(graph.details[out])
        if shared is None:
            continue
        roles.setdefault(out, set()).add("out")
        for t in op["inputs"]:
            tensor = int(t)
            # up through ops that keep their input's quantization (transpose, pad, pooling, resize)
            while tensor is not None and _quant(graph.details[tensor]) == shared:
                roles.setdefault(tensor, set()).add("in")
                producer = graph.producer.get(tensor)
                tensor = int(producer["inputs"][0]) if producer and producer["op_name"] in SAME_SCALE_OPS else None
    return {t: "+".join(sorted(r)) for t, r in roles.items()}


def _stats(graph: Graph, index: int, reference: str, concat: dict[int, str], head: int | None = None) -> TensorStats:
    detail = graph.details[index]
    quant = _quant(detail)
    inputs = [graph.details[int(i)]["name"] for i in graph.producer[index]["inputs"] if int(i) in graph.producer]
    return TensorStats(inputs=inputs, name=detail["name"], reference=reference, op=graph.producer[index]["op_name"],
                       shape=[int(d) for d in detail["shape"]], scale=quant[0] if quant else None,
                       zero_point=quant[1] if quant else None, concat=concat.get(index, ""), head=head)


def _set_drops(stats: list[TensorStats]) -> None:
    """SQNR lost at each tensor beyond what its inputs already carried (None when no input was compared).

    SQNR alone grows worse with depth; the drop singles out the ops that add the error.
    """
    by_name = {t.name: t for t in stats}
    for t in stats:
        inputs = [by_name[n].sqnr_db for n in t.inputs if n in by_name]
        if inputs and math.isfinite(min(inputs)) and math.isfinite(t.sqnr_db):
            t.drop_db = min(inputs) - t.sqnr_db


def explain(int8_path: Path, fp32_path: Path, images: list[np.ndarray], require_int8: bool = True) -> Report:
    """Compare every matching tensor of the two models on these letterboxed uint8 RGB images."""
    if not images:
        raise ConvertError("no images to compare the models on: pass --images with a folder of photos")
    quant, ref = open_pair(int8_path, fp32_path, require_int8)
    height, width = quant.input_shape[1:3]
    if images[0].shape[:2] != (height, width):
        raise ConvertError(f"images are {images[0].shape[1]}x{images[0].shape[0]}, the models take {width}x{height}")
    pairs, matching = _pairs(quant, ref, height)
    for image in images:
        quant.feed(image)
        ref.feed(image)
        for index, twin, stats in pairs:
            approx = quant.value(index)
            stats.add(ref.value(twin), approx, approx.size * len(images))
    _set_drops([s for _, _, s in pairs])
    heads = sorted((s for _, _, s in pairs if s.head is not None), key=lambda s: s.head)
    tensors = sorted((s for _, _, s in pairs if s.head is None), key=lambda s: (s.sqnr_db, s.name))
    return Report(int8=str(int8_path), fp32=str(fp32_path), images=len(images), tensors=tensors, heads=heads,
                  **matching)


TABLE_COLUMNS = ("SQNR dB", "drop dB", "rel err", "err/step", "clip %", "scale", "step/own", "min", "max", "p99.99|x|", "max/p", "op",
                 "concat", "shape", "tensor")


def _row(t: TensorStats) -> list[str]:
    steps = t.error_steps
    drop = "-" if t.drop_db is None else f"{round(t.drop_db, 1) + 0.0:.1f}"  # no "-0.0"
    name = short_name(t.name) if t.head is None else f"stride {t.head} ({t.name})"
    return [_db(t.sqnr_db), drop, f"{t.relative_error:.3f}", "-" if steps is None else f"{steps:.2f}",
            f"{100 * t.clipped_fraction:.2f}", "-" if t.scale is None else f"{t.scale:.4g}",
            "-" if t.step_ratio is None else f"{t.step_ratio:.2f}",
            f"{t.min:.3g}", f"{t.max:.3g}", f"{t.percentile_abs:.3g}", f"{t.outlier_ratio:.2f}", t.op,
            t.concat or "-", "x".join(map(str, t.shape[1:])), name]


def format_table(rows: list[TensorStats]) -> str:
    cells = [list(TABLE_COLUMNS)] + [_row(t) for t in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(TABLE_COLUMNS))]
    numeric = TABLE_COLUMNS.index("op")  # numbers right-aligned, words left
    lines = ["  ".join(c.rjust(w) if i < numeric else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in cells]
    return "\n".join(lines)


def format_report(report: Report, top: int = 15) -> str:
    matched = report.matched_by_name + report.matched_through_wrapper
    unmatched = f", unmatched: {', '.join(map(short_name, report.unmatched))}" if report.unmatched else ""
    return "\n".join([
        f"{Path(report.int8).name} against {Path(report.fp32).name} on {report.images} images: "
        f"{matched} intermediate tensors matched ({report.matched_by_name} by name, "
        f"{report.matched_through_wrapper} through a QUANTIZE wrapper), {len(report.heads)} output heads by "
        f"stride{unmatched}",
        "",
        "Output heads:",
        format_table(report.heads),
        "",
        f"Worst {min(top, len(report.tensors))} of {len(report.tensors)} tensors by SQNR "
        f"(drop = SQNR lost at this op beyond its worst input; concat: in/out = scale forced by a "
        f"Concatenation; max/p = max|x| over the {PERCENTILE}th percentile; step/own = the int8 step over the one the tensor's range "
        f"on these images needs):",
        format_table(report.tensors[:top]),
        "",
        f"Largest {min(DROP_ROWS, len(report.drops()))} drops (where the error is added rather than carried in):",
        format_table(report.drops()[:DROP_ROWS]),
        "",
        report.summary(),
    ])
