"""A TFLite model run with every tensor kept, and the int8 tensors paired with their fp32 twins."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from convert.errors import ConvertError
from convert.explain.stats import TensorStats
from edge.errors import EdgeError
from edge.model.interpreter import interpreter_module, read_model_file

CONCAT_OP = "CONCATENATION"
WRAPPER_OPS = ("QUANTIZE", "DEQUANTIZE")  # change only the representation, not the value
# int8 ops whose output reuses the input's scale and zero point, so a forced scale reaches back through them
SAME_SCALE_OPS = ("TRANSPOSE", "RESHAPE", "PAD", "MAX_POOL_2D", "RESIZE_NEAREST_NEIGHBOR")


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
        module = interpreter_module()
    except EdgeError as exc:
        raise ConvertError(str(exc)) from None
    # tensorflow.lite keeps the resolver types under `experimental`
    resolver = (getattr(module, "OpResolverType", None) or module.experimental.OpResolverType).BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter_class = module.Interpreter
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


def pairs(quant: Graph, ref: Graph, height: int) -> tuple[list[tuple[int, int, TensorStats]], dict]:
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


