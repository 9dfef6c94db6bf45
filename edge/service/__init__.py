"""The long-running service around the stages: the capture thread with its reconnects, the inference
loop that drives detector and sinks, the stats it keeps, and systemd's notify/watchdog protocol."""

from edge.service.capture import Capture, CaptureSettings, Mailbox
from edge.service.pipeline import Pipeline, PipelineSettings, stop_on_signals
from edge.service.sdnotify import Notifier, WatchdogPacer
from edge.service.stats import Counters, PipelineStats

__all__ = ["Capture", "CaptureSettings", "Mailbox", "Pipeline", "PipelineSettings", "stop_on_signals", "Notifier",
           "WatchdogPacer", "Counters", "PipelineStats"]
