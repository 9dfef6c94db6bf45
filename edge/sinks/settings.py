"""Where the results of every frame go besides MQTT: JSON lines and annotated frames."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from edge.fields import check_fields, setting
from edge.sinks.jsonlines import DEFAULT_JSON_BACKUPS, DEFAULT_JSON_MAX_MB
from edge.sinks.saved import DEFAULT_SAVE_MAX_FILES, DEFAULT_SAVE_MAX_MB

STDOUT = "-"
MAX_JSON_MB = 1_048_576.0  # a terabyte
MAX_JSON_BACKUPS = 1000
MAX_SAVE_FILES = 10_000_000


@dataclass(frozen=True)
class OutputSettings:
    TITLE: ClassVar[str] = "output"

    save: str | None = setting(None, help="also write annotated frames: to a folder, or into one video if PATH ends "
                               "in .mp4 or .avi", metavar="PATH", example="/var/lib/edge-detect/frames",
                               note="Under the service only /var/lib/edge-detect is writable.")
    save_max_files: int = setting(DEFAULT_SAVE_MAX_FILES, metavar="N", low=1, high=MAX_SAVE_FILES,
                                  help="most annotated frames kept in the --save folder; the oldest are removed first")
    save_max_mb: float = setting(DEFAULT_SAVE_MAX_MB, metavar="MB", low=0.0, low_open=True, high=MAX_JSON_MB,
                                 help="most megabytes of annotated frames kept in the --save folder; the oldest are "
                                      "removed first", note="A video (--save out.mp4) is not rotated.")
    json_out: str = setting(STDOUT, help="write the JSON lines to FILE, rotated by size, instead of stdout (-)",
                            metavar="FILE", example="/var/lib/edge-detect/detections.jsonl",
                            note='The service discards stdout ("-"): give a file to keep them.')
    json_max_mb: float = setting(DEFAULT_JSON_MAX_MB, help="rotate --json-out at this size in MB", metavar="MB",
                                 low=0.0, low_open=True, high=MAX_JSON_MB)
    json_backups: int = setting(DEFAULT_JSON_BACKUPS, help="rotated --json-out files kept, FILE.1 the newest",
                                metavar="N", low=0, high=MAX_JSON_BACKUPS)

    def __post_init__(self) -> None:
        check_fields(self)
