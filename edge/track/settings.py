"""What the tracker, the zones and the lines are told; each checked on construction, naming the field.

Zones, lines and label aliases live in the config file only, as arrays of tables
(``[[track.zones]]``, ``[[track.lines]]``, ``[[track.aliases]]``), with points in normalised frame
coordinates (0..1, x to the right, y down), so they survive a change of camera resolution. Labels
are checked against the model's names when the tracker is built (``check_labels``), since a
settings file is read before any model is.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, fields
from typing import ClassVar, Sequence

from edge.errors import InvalidSetting
from edge.fields import check_fields, setting

ANCHORS = ("bottom", "center")  # which point of a box must be inside a zone / cross a line
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")  # one MQTT topic level, a Home Assistant object id
# Topic levels under <prefix>/<device>/ that zones and lines may not take.
RESERVED_NAMES = frozenset({"detections", "status", "stats", "snapshot", "events", "all"})
MIN_ZONE_POINTS = 3


def _check_name(field: str, name: str) -> None:
    if not NAME_PATTERN.match(name or ""):
        raise InvalidSetting(field, f"{name!r} cannot be a topic level; use letters, digits, - and _")
    if name in RESERVED_NAMES:
        raise InvalidSetting(field, f"{name!r} is taken by edge-yolo's own topics ({', '.join(sorted(RESERVED_NAMES))}); choose another name")


def _check_points(field: str, points: tuple, fewest: int, most: int | None = None) -> tuple[tuple[float, float], ...]:
    try:
        pairs = tuple((float(x), float(y)) for x, y in points)
    except (TypeError, ValueError):
        raise InvalidSetting(field, "must be a list of [x, y] pairs, e.g. [[0.1, 0.5], [0.9, 0.5]]") from None
    if len(pairs) < fewest or (most is not None and len(pairs) > most):
        wanted = f"exactly {fewest}" if most == fewest else f"at least {fewest}"
        raise InvalidSetting(field, f"needs {wanted} points, received {len(pairs)}")
    outside = [p for p in pairs if not (0.0 <= p[0] <= 1.0 and 0.0 <= p[1] <= 1.0)]
    if outside:
        x, y = outside[0]
        raise InvalidSetting(field, f"point [{x:g}, {y:g}] is outside the frame; coordinates are fractions of "
                                    f"width and height, between 0 and 1")
    return pairs


@dataclass(frozen=True)
class ZoneSettings:
    """A polygon of the frame; objects of ``labels`` inside it are counted and their entering and leaving told."""

    name: str = setting(help="the zone's topic level: counts go to <prefix>/<device>/<name>/<label>")
    points: tuple[tuple[float, float], ...] = setting(
        help="the polygon's corners as [x, y] fractions of the frame (0..1, y down), at least 3",
        example=((0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)))
    labels: tuple[str, ...] | None = setting(None, help="the labels this zone counts", default_text="every tracked label")
    anchor: str = setting("bottom", choices=ANCHORS,
                          help="the point of a box that must be inside: bottom (the middle of its lower edge, where "
                               "a person stands) or center (top-down views)")

    def __post_init__(self) -> None:
        check_fields(self)
        _check_name("name", self.name)
        object.__setattr__(self, "points", _check_points("points", self.points, MIN_ZONE_POINTS))
        object.__setattr__(self, "labels", None if self.labels is None else tuple(self.labels))


@dataclass(frozen=True)
class LineSettings:
    """A segment of the frame; objects of ``labels`` crossing it are counted by direction.

    ``in`` counts crossings to the right-hand side of the line walked from its first point to its
    second, as seen in the image; ``out`` the other way. A line drawn left to right counts objects
    moving down across it as ``in``.
    """

    name: str = setting(help="the line's topic level: counts go to <prefix>/<device>/<name>/<label>/in and /out")
    points: tuple[tuple[float, float], ...] = setting(
        help="the segment's two ends as [x, y] fractions of the frame (0..1, y down)", example=((0.0, 0.5), (1.0, 0.5)))
    labels: tuple[str, ...] | None = setting(None, help="the labels counted", default_text="every tracked label")
    anchor: str = setting("bottom", choices=ANCHORS, help="the point of a box that crosses: bottom or center")

    def __post_init__(self) -> None:
        check_fields(self)
        _check_name("name", self.name)
        points = _check_points("points", self.points, 2, 2)
        if points[0] == points[1]:
            raise InvalidSetting("points", "the two ends are the same point; a line needs two different ends")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "labels", None if self.labels is None else tuple(self.labels))


@dataclass(frozen=True)
class AliasSettings:
    """Model labels merged into one before tracking: ``label = "car"``, ``merge = ["car", "truck", "bus"]``."""

    label: str = setting(help="the label the merged detections go by (a model label or a new one)")
    merge: tuple[str, ...] = setting(help="the model's labels merged into it")

    def __post_init__(self) -> None:
        check_fields(self)
        object.__setattr__(self, "merge", tuple(self.merge))
        if not str(self.label).strip():
            raise InvalidSetting("label", "needs a label name")
        if not self.merge:
            raise InvalidSetting("merge", "needs at least one label to merge")


@dataclass(frozen=True)
class TrackSettings:
    """How detections become objects that keep an id from frame to frame (see ``edge.track.tracker``)."""

    TABLE: ClassVar[str] = "track"
    FLAG_PREFIX: ClassVar[str] = "track-"
    TITLE: ClassVar[str] = "tracking, zones and lines"

    enabled: bool = setting(False, flag="track",
                            help="follow objects across frames (ids, zones, lines); always on with --publish events "
                                 "and when zones or lines are set")
    labels: tuple[str, ...] = setting(("person",), metavar="LABEL",
                                      help="the labels that become tracked objects; other detections are ignored")
    high_score: float = setting(0.4, metavar="SCORE", low=0.0, high=1.0,
                                help="detections scoring at least this are matched to tracks first")
    low_score: float = setting(0.1, metavar="SCORE", low=0.0, high=1.0,
                               help="detections between this and --track-high-score only continue a track seen "
                                    "in the previous frame (an object partly hidden keeps its id)")
    new_score: float = setting(0.5, metavar="SCORE", low=0.0, high=1.0,
                               help="a detection must score this to start a new track")
    match_iou: float = setting(0.2, metavar="IOU", low=0.0, high=1.0, low_open=True,
                               help="the least overlap (IoU) of a track's predicted box and a detection to match them")
    min_hits: int = setting(3, metavar="N", low=1,
                            help="frames in a row a new track must be matched in before it counts as an object")
    lost_s: float = setting(2.0, key="lost-after", metavar="S", low=0.0, low_open=True,
                            help="an object unseen for this many seconds has left")
    stationary_s: float = setting(10.0, key="stationary-after", metavar="S", low=0.0, low_open=True,
                                  help="an object whose box barely moves for this many seconds is stationary: "
                                       "no further events while it stands")
    stationary_iou: float = setting(0.7, metavar="IOU", low=0.0, high=1.0, low_open=True,
                                    help="how much a box must still overlap where the object stopped to count as not moving")
    stationary_lost_s: float = setting(30.0, key="stationary-lost-after", metavar="S", low=0.0, low_open=True,
                                       help="a stationary object unseen for this many seconds has left (a parked car "
                                            "hidden by a passing one is not a new car)")
    aliases: tuple[AliasSettings, ...] = setting(
        (), cli=False, example=(AliasSettings(label="vehicle", merge=("car", "truck", "bus")),),
        help="labels merged into one before tracking ([[track.aliases]] label, merge)",
        note="For labels the model confuses on your camera, or a group such as vehicle.")
    zones: tuple[ZoneSettings, ...] = setting(
        (), cli=False, example=(ZoneSettings(name="door", points=((0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0))),),
        help="polygons whose objects are counted ([[track.zones]] name, points, labels, anchor)",
        note="Points are [x, y] fractions of the frame, x to the right, y down; at least three.")
    lines: tuple[LineSettings, ...] = setting(
        (), cli=False, example=(LineSettings(name="gate", points=((0.0, 0.6), (1.0, 0.6))),),
        help="segments whose crossings are counted by direction ([[track.lines]] name, points, labels, anchor)",
        note="in counts crossings to the right of the line walked from its first point to its second: a line "
             "drawn left to right counts objects moving down across it as in.")

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "aliases", tuple(_section(AliasSettings, "aliases", i, a) for i, a in enumerate(self.aliases)))
        object.__setattr__(self, "zones", tuple(_section(ZoneSettings, "zones", i, z) for i, z in enumerate(self.zones)))
        object.__setattr__(self, "lines", tuple(_section(LineSettings, "lines", i, z) for i, z in enumerate(self.lines)))
        check_fields(self)
        _check_aliases(self.aliases)
        if not self.labels:
            raise InvalidSetting("labels", "needs at least one label, e.g. labels = [\"person\"]")
        if not self.low_score <= self.high_score <= self.new_score:
            raise InvalidSetting("high_score", f"scores must satisfy low-score <= high-score <= new-score, received "
                                               f"{self.low_score:g}, {self.high_score:g}, {self.new_score:g}")
        if self.stationary_lost_s < self.lost_s:
            raise InvalidSetting("stationary_lost_s", f"must be at least lost-after ({self.lost_s:g}), "
                                                      f"received {self.stationary_lost_s:g}")
        names = [item.name for item in self.zones + self.lines]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise InvalidSetting("zones", f"the name {twice[0]!r} is used twice; zones and lines need names of their own")
        for kind, items in (("zones", self.zones), ("lines", self.lines)):
            for index, item in enumerate(items):
                stray = [label for label in item.labels or () if label not in self.labels]
                if stray:
                    raise InvalidSetting(f"{kind}[{index}].labels", f"{stray[0]!r} is not tracked; add it to [track] "
                                                                    f"labels ({', '.join(self.labels)}) or drop it")

    @property
    def active(self) -> bool:
        """Whether to track even without --publish events: asked for, or zones or lines to count."""
        return self.enabled or bool(self.zones or self.lines)

    def check_labels(self, names: Sequence[str]) -> None:
        """InvalidSetting naming the first tracked label that neither the model nor an alias gives."""
        known = tuple(names) + tuple(alias.label for alias in self.aliases)
        unknown = [label for label in self.labels if label not in known]
        if unknown:
            shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
            raise InvalidSetting("labels", f"the model has no label {unknown[0]!r}; its labels are {shown}")

    def labels_of(self, item: ZoneSettings | LineSettings) -> tuple[str, ...]:
        return item.labels or self.labels


def _check_aliases(aliases: tuple[AliasSettings, ...]) -> None:
    merged_into: dict[str, str] = {}
    for index, alias in enumerate(aliases):
        for source in alias.merge:
            if source in merged_into:
                raise InvalidSetting(f"aliases[{index}].merge", f"{source!r} is merged into {merged_into[source]!r} already")
            merged_into[source] = alias.label
    for index, alias in enumerate(aliases):
        if merged_into.get(alias.label, alias.label) != alias.label:
            raise InvalidSetting(f"aliases[{index}].label", f"{alias.label!r} is itself merged into "
                                                            f"{merged_into[alias.label]!r}; merge into one label")


def _section(cls, kind: str, index: int, value):
    """A zone or line from its settings object or from a TOML table; errors name ``zones[i].key``."""
    if isinstance(value, cls):
        return value
    where = f"{kind}[{index}]"
    if not isinstance(value, dict):
        raise InvalidSetting(where, f"must be a table with name and points, received {value!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise InvalidSetting(f"{where}.{unknown[0]}", f"unknown key; {kind} take {', '.join(sorted(known))}")
    missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in value]
    if missing:
        raise InvalidSetting(f"{where}.{missing[0]}", "is required")
    try:
        return cls(**value)
    except InvalidSetting as exc:
        raise InvalidSetting(f"{where}.{exc.field}", exc.message) from None


@dataclass(frozen=True)
class EventSettings:
    """What an object's events carry (``--publish events``): see ``edge.track.events``."""

    TABLE: ClassVar[str] = "events"
    FLAG_PREFIX: ClassVar[str] = "events-"
    TITLE: ClassVar[str] = "object events (--publish events)"

    snapshot: bool = setting(True, help="publish a JPEG of each object's best frame with its events, "
                                        "on <prefix>/<device>/events/snapshot (retained: the latest)")
    snapshot_gain: float = setting(0.1, metavar="SCORE", low=0.0, high=1.0, low_open=True,
                                   help="how much higher a frame must score than the snapshot already sent to be a "
                                        "better one (an update event)")
    snapshot_wait_s: float = setting(2.0, key="snapshot-wait", metavar="S", low=0.0,
                                     help="the least time between two better-snapshot updates of one object")
    crop_margin: float = setting(0.25, metavar="FRACTION", low=0.0, high=2.0,
                                 help="context kept around the object in its snapshot, as a fraction of the box's size")

    def __post_init__(self) -> None:
        check_fields(self)
