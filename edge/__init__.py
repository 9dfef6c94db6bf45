"""edge-yolo's device runtime: numpy, OpenCV and a TFLite interpreter, never torch or TensorFlow.

A frame's path, one way only::

    sources ──► detect (letterbox → model → decode + NMS) ──► [track] ──► sinks (JSON lines, saved frames, MQTT)
                       ▲ model (file check, metadata, interpreter)
    track: detections to objects (tracker, zones, lines, events), when tracking is on
    service: capture thread → mailbox → pipeline loop → sinks; stats, sd_notify
    settings: one model of every setting, built from the sections the stages declare (fields)
    cli: builds the settings and wires the above together

A package may import those below it (sources and model at the bottom, then detect, track,
sinks, service, settings, cli), never one above; ``tests/edge/test_layers.py`` enforces it.
"""
