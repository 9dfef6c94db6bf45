"""The model file and what runs it: the flatbuffer check, the metadata contract with convert/, and
the TFLite interpreter (XNNPACK on the CPU, the Edge TPU delegate on Coral).

A new backend (another delegate, another runtime) belongs in ``interpreter``: it must keep the
``Model`` view (input buffer, outputs by stride, quantization) that ``edge.detect`` reads.
"""

from edge.model.interpreter import Model, Quantization, load_interpreter, parse_device
from edge.model.metadata import ModelMeta, class_ids_from, read_metadata

__all__ = ["Model", "Quantization", "load_interpreter", "parse_device", "ModelMeta", "class_ids_from", "read_metadata"]
