"""Full-integer int8 with activation ranges chosen by the error they cause.

TFLite's calibrator gives every tensor the min..max it saw, so a few outliers spread 256 levels over
a range most values never use. Here the float model is calibrated as usual, each activation's values
are histogrammed on the same images, and its range is set to the one that minimises the squared error
of what the next op makes of it (a SiLU, the detection sigmoid, or the value itself); TFLite's own
quantizer then builds the int8 model from those ranges, so every operator stays an integer kernel.
"""
from convert.int8.quantize import RANGE_METHODS, quantize_int8

__all__ = ["RANGE_METHODS", "quantize_int8"]
