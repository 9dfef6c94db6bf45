"""A frame in, detections in frame pixels out: letterbox into the input tensor, invoke, decode the
quantized heads, NMS, and boxes mapped back to the frame (``detector`` ties them together)."""

from edge.detect.detections import Detections
from edge.detect.detector import STAGES, DetectSettings, Detector

__all__ = ["Detections", "STAGES", "DetectSettings", "Detector"]
