"""How the run is paced and reported: replay, real-time reading, an inference-rate cap, a frame
limit and the stats interval. Turned into the capture's and the pipeline's own settings here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from edge.fields import check_fields, setting
from edge.service.capture import CaptureSettings
from edge.service.pipeline import DEFAULT_STATS_INTERVAL_S, PipelineSettings
from edge.sources.settings import SourceSettings

MIN_FPS = 0.1  # an inference at least every 10 s, well inside the service's watchdog
MAX_FPS = 1000.0
MAX_STATS_INTERVAL_S = 86_400.0


@dataclass(frozen=True)
class RunSettings:
    TITLE: ClassVar[str] = "run"

    loop: bool = setting(False, help="replay a video or image source from the start when it ends (files only)")
    realtime: bool = setting(False, help="read a video at its own frame rate and drop frames inference cannot keep up "
                             "with, as with a camera (default for files: process every frame)")
    max_fps: float | None = setting(None, help="most inferences per second; a video is then read in real time",
                                    low=MIN_FPS, high=MAX_FPS, example=5, default_text="no limit",
                                    note="Fewer save power and heat.")
    max_frames: int | None = setting(None, help="stop after this many processed frames", low=1,
                                     example=1000, default_text="no limit",
                                     note="For trials; a service normally runs without it.")
    stats_interval: float = setting(DEFAULT_STATS_INTERVAL_S, help="log fps, latency, dropped frames and reconnects "
                                    "every S seconds; 0 disables", metavar="S", low=0.0, high=MAX_STATS_INTERVAL_S)

    def __post_init__(self) -> None:
        check_fields(self)

    def capture(self, source: SourceSettings, live: bool) -> CaptureSettings:
        return CaptureSettings(loop=self.loop, realtime=self.realtime or (self.max_fps is not None and not live),
                               max_frames=self.max_frames, stall_timeout_s=source.stall_timeout)

    def pipeline(self) -> PipelineSettings:
        return PipelineSettings(self.max_frames, self.max_fps, self.stats_interval)
