"""Check a freshly built aarch64 environment before it is trusted.

Run by tests/aarch64/run.sh with the emulated interpreter: the machine must be aarch64, the runtime
wheels must import, neither torch nor tensorflow may be importable, and ai-edge-litert must build
and invoke an interpreter (QEMU older than 10 crashes in that constructor). The model is a one-op
TFLite graph written here with the schema bundled in ai-edge-litert, so no converter is needed.
"""

import importlib.metadata
import importlib.util
import platform
import sys


def fail(message: str) -> None:
    print(f"smoke: error: {message}", file=sys.stderr)
    sys.exit(1)


def add_model() -> bytes:
    """A float32 [1, 4] graph computing y = x + x."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    code = schema.OperatorCodeT()
    code.builtinCode = schema.BuiltinOperator.ADD
    code.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
    code.version = 1

    tensors = []
    for index, name in enumerate(("x", "y")):
        tensor = schema.TensorT()
        tensor.shape = [1, 4]
        tensor.type = schema.TensorType.FLOAT32
        tensor.buffer = index + 1
        tensor.name = name
        tensors.append(tensor)

    op = schema.OperatorT()
    op.opcodeIndex = 0
    op.inputs = [0, 0]
    op.outputs = [1]
    op.builtinOptionsType = schema.BuiltinOptions.AddOptions
    op.builtinOptions = schema.AddOptionsT()

    graph = schema.SubGraphT()
    graph.tensors = tensors
    graph.inputs = [0]
    graph.outputs = [1]
    graph.operators = [op]
    graph.name = "main"

    model = schema.ModelT()
    model.version = 3
    model.description = "smoke"
    model.operatorCodes = [code]
    model.subgraphs = [graph]
    model.buffers = [schema.BufferT() for _ in range(3)]

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def main() -> None:
    machine = platform.machine()
    if machine != "aarch64":
        fail(f"interpreter reports machine {machine!r}, expected 'aarch64'")
    if sys.prefix == sys.base_prefix:
        fail(f"not running inside the virtual environment (prefix {sys.prefix})")
    present = [name for name in ("torch", "tensorflow") if importlib.util.find_spec(name)]
    if present:
        fail(f"the runtime environment must not contain {', '.join(present)}")

    import cv2
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    if not np.allclose(a @ a.T, np.dot(a, a.T)) or float((a @ a.T)[2, 2]) != 366.0:
        fail("numpy matrix product gave a wrong result")
    image = np.zeros((8, 8, 3), np.uint8)
    if cv2.resize(image, (4, 2)).shape != (2, 4, 3):
        fail("cv2.resize gave a wrong shape")

    interpreter = Interpreter(model_content=add_model(), num_threads=1)
    interpreter.allocate_tensors()
    x = np.array([[1, 2, 3, 4]], np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    if not np.array_equal(y, x + x):
        fail(f"ai-edge-litert ADD returned {y.tolist()}, expected {(x + x).tolist()}")

    versions = ", ".join(
        f"{dist} {importlib.metadata.version(dist)}"
        for dist in ("numpy", "opencv-python-headless", "ai-edge-litert")
    )
    print(f"smoke: {machine}, Python {platform.python_version()}, {versions}: interpreter invoked OK")


if __name__ == "__main__":
    main()
