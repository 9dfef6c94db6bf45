"""Where results go: JSON lines, annotated images or video, and MQTT (``edge.sinks.mqtt``).

Each sink implements ``Sink`` (``base``). A new destination is a module here with ``write``,
``stats`` and ``close``, wired in by the CLI; it must never block the inference loop for long.
"""

from edge.sinks.base import Sink
from edge.sinks.jsonlines import JsonLinesSink, RotatingJsonFile, frame_record, json_line
from edge.sinks.saved import AnnotatedImageSink, AnnotatedVideoSink, is_video_path

__all__ = ["Sink", "JsonLinesSink", "RotatingJsonFile", "frame_record", "json_line", "AnnotatedImageSink",
           "AnnotatedVideoSink", "is_video_path"]
