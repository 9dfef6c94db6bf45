"""The calibrated float flatbuffer as data: which tensors carry a range, and what consumes each.

TFLite's calibrator writes each activation's min/max into the float model; the quantizer reads them
back. Reading and rewriting those two numbers is the whole interface to the quantizer.
"""
from __future__ import annotations

from dataclasses import dataclass

from convert.int8.ranges import Transfer, identity, sigmoid, silu

FLOAT32 = 0  # tflite.TensorType.FLOAT32


@dataclass(frozen=True)
class RangedTensor:
    index: int
    name: str
    low: float
    high: float
    transfer: Transfer  # what the consuming op makes of it; the error is measured after this
    fixed: bool  # the quantizer fixes its scale (graph input, sigmoid output): left as calibrated


def _schema():
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils


def _op_names(model) -> list[str]:
    fb = _schema()
    by_code = {v: k for k, v in vars(fb.schema_fb.BuiltinOperator).items() if not k.startswith("_")}
    names = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        names.append(by_code[max(code.builtinCode, code.deprecatedBuiltinCode)])
    return names


def read_model(content: bytes):
    return _schema().convert_bytearray_to_object(bytearray(content))


def write_model(model) -> bytes:
    return bytes(_schema().convert_object_to_bytearray(model))


def ranged_tensors(model) -> list[RangedTensor]:
    """Every float activation with a calibrated range, with the function its consumer applies.

    A convolution whose output goes to a LOGISTIC and is multiplied by it is a SiLU input; one that
    only goes to a LOGISTIC is a detection head.
    """
    graph = model.subgraphs[0]
    ops = list(zip(_op_names(model), graph.operators))
    sigmoid_inputs = {int(op.inputs[0]) for name, op in ops if name == "LOGISTIC"}
    sigmoid_outputs = {int(op.outputs[0]) for name, op in ops if name == "LOGISTIC"}
    multiplied = {int(i) for name, op in ops if name == "MUL" for i in op.inputs}
    inputs = {int(i) for i in graph.inputs}
    found = []
    for index, tensor in enumerate(graph.tensors):
        q = tensor.quantization
        if tensor.type != FLOAT32 or q is None or q.min is None or len(q.min) != 1:
            continue
        if index in sigmoid_inputs:
            transfer = silu if index in multiplied else sigmoid
        else:
            transfer = identity
        found.append(RangedTensor(index, tensor.name.decode(), float(q.min[0]), float(q.max[0]), transfer,
                                  fixed=index in inputs or index in sigmoid_outputs))
    return found


def set_ranges(model, ranges: dict[int, tuple[float, float]]) -> None:
    for index, (low, high) in ranges.items():
        q = model.subgraphs[0].tensors[index].quantization
        q.min, q.max = [float(low)], [float(high)]
