"""Bounds check of a .tflite flatbuffer before the interpreter sees it.

TFLite's Python interpreters build models without the flatbuffer verifier, so a truncated or
corrupt file crashes the process (segmentation fault) instead of raising. This walks the parts
of the schema that point into the file (subgraphs, tensors, operators, buffers) and reports the
first offset that falls outside it. Load-time only: a few hundred tables.
"""

from __future__ import annotations

import struct

# field slots in tensorflow/lite/schema/schema.fbs
MODEL_OPERATOR_CODES, MODEL_SUBGRAPHS, MODEL_BUFFERS = 1, 2, 4
SUBGRAPH_TENSORS, SUBGRAPH_INPUTS, SUBGRAPH_OUTPUTS, SUBGRAPH_OPERATORS = 0, 1, 2, 3
TENSOR_SHAPE, TENSOR_BUFFER = 0, 2
OPERATOR_OPCODE_INDEX, OPERATOR_INPUTS, OPERATOR_OUTPUTS = 0, 1, 2
BUFFER_DATA, BUFFER_OFFSET, BUFFER_SIZE = 0, 1, 2
EXTERNAL_BUFFER_MIN_OFFSET = 1  # offset 0/1 means "no external data" in the schema
OPTIONAL_TENSOR = -1
U32, I32, U16, U64 = struct.Struct("<I"), struct.Struct("<i"), struct.Struct("<H"), struct.Struct("<Q")
VTABLE_HEADER_BYTES = 4
INT32_BYTES = 4


class CorruptModel(Exception):
    """The flatbuffer points outside itself; the message says where."""


class _Reader:
    def __init__(self, data: bytes | memoryview, file_size: int):
        self.data = data
        self.size = len(data)
        self.file_size = file_size

    def read(self, fmt: struct.Struct, pos: int, what: str) -> int:
        if pos < 0 or pos + fmt.size > self.size:
            raise CorruptModel(f"{what} at byte {pos} lies outside the {self.size}-byte model")
        return fmt.unpack_from(self.data, pos)[0]

    def table(self, pos: int, what: str) -> tuple[int, int]:
        """(table position, vtable position)."""
        vtable = pos - self.read(I32, pos, what)
        vtable_size = self.read(U16, vtable, f"{what} vtable")
        if vtable_size < VTABLE_HEADER_BYTES or vtable + vtable_size > self.size:
            raise CorruptModel(f"{what} vtable at byte {vtable} is malformed")
        return pos, vtable

    def field(self, table: tuple[int, int], slot: int) -> int | None:
        pos, vtable = table
        entry = VTABLE_HEADER_BYTES + 2 * slot
        if entry >= self.read(U16, vtable, "vtable"):
            return None
        offset = self.read(U16, vtable + entry, "vtable entry")
        return pos + offset if offset else None

    def scalar(self, table: tuple[int, int], slot: int, fmt: struct.Struct, default: int = 0) -> int:
        pos = self.field(table, slot)
        return default if pos is None else self.read(fmt, pos, "scalar field")

    def vector(self, table: tuple[int, int], slot: int, elem_bytes: int, what: str) -> tuple[int, int]:
        """(first element position, length); (0, 0) when absent."""
        pos = self.field(table, slot)
        if pos is None:
            return 0, 0
        start = pos + self.read(U32, pos, what)
        length = self.read(U32, start, f"{what} length")
        first = start + 4
        if first + length * elem_bytes > self.size:
            raise CorruptModel(f"{what} ({length} items at byte {first}) runs past the end of the {self.size}-byte model")
        return first, length

    def tables(self, table: tuple[int, int], slot: int, what: str) -> list[tuple[int, int]]:
        first, length = self.vector(table, slot, INT32_BYTES, what)
        positions = (first + INT32_BYTES * i for i in range(length))
        return [self.table(p + self.read(U32, p, what), what) for p in positions]

    def ints(self, table: tuple[int, int], slot: int, what: str) -> list[int]:
        first, length = self.vector(table, slot, INT32_BYTES, what)
        return list(struct.unpack_from(f"<{length}i", self.data, first)) if length else []


def check_tflite(data: bytes | memoryview, file_size: int | None = None) -> None:
    """Raise CorruptModel if any table, vector or buffer of the model lies outside ``data``."""
    reader = _Reader(data, len(data) if file_size is None else file_size)
    model = reader.table(reader.read(U32, 0, "root offset"), "model")
    operator_codes = reader.tables(model, MODEL_OPERATOR_CODES, "operator codes")
    buffers = reader.tables(model, MODEL_BUFFERS, "buffers")
    for i, buffer in enumerate(buffers):
        reader.vector(buffer, BUFFER_DATA, 1, f"buffer {i}")
        offset = reader.scalar(buffer, BUFFER_OFFSET, U64)
        if offset > EXTERNAL_BUFFER_MIN_OFFSET and offset + reader.scalar(buffer, BUFFER_SIZE, U64) > reader.file_size:
            raise CorruptModel(f"buffer {i} data runs past the end of the {reader.file_size}-byte file")
    subgraphs = reader.tables(model, MODEL_SUBGRAPHS, "subgraphs")
    if not subgraphs:
        raise CorruptModel("the model has no subgraph")
    for s, subgraph in enumerate(subgraphs):
        tensors = reader.tables(subgraph, SUBGRAPH_TENSORS, f"subgraph {s} tensors")
        for t, tensor in enumerate(tensors):
            reader.ints(tensor, TENSOR_SHAPE, f"tensor {t} shape")
            if reader.scalar(tensor, TENSOR_BUFFER, U32) >= max(len(buffers), 1):
                raise CorruptModel(f"tensor {t} refers to a buffer the model does not have")
        _check_indices(reader.ints(subgraph, SUBGRAPH_INPUTS, "subgraph inputs"), len(tensors), f"subgraph {s} inputs")
        _check_indices(reader.ints(subgraph, SUBGRAPH_OUTPUTS, "subgraph outputs"), len(tensors), f"subgraph {s} outputs")
        for o, operator in enumerate(reader.tables(subgraph, SUBGRAPH_OPERATORS, f"subgraph {s} operators")):
            if reader.scalar(operator, OPERATOR_OPCODE_INDEX, U32) >= len(operator_codes):
                raise CorruptModel(f"operator {o} refers to an operator code the model does not have")
            _check_indices(reader.ints(operator, OPERATOR_INPUTS, f"operator {o} inputs"), len(tensors), f"operator {o} inputs")
            _check_indices(reader.ints(operator, OPERATOR_OUTPUTS, f"operator {o} outputs"), len(tensors), f"operator {o} outputs")


def _check_indices(indices: list[int], count: int, what: str) -> None:
    if any(not OPTIONAL_TENSOR <= i < count for i in indices):
        raise CorruptModel(f"{what} refer to tensors the model does not have")
