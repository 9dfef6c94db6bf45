"""Tracking, zone, line and event settings: bad values are one line naming the key."""

from __future__ import annotations

import pytest

from edge.fields import InvalidSetting
from edge.track import EventSettings, LineSettings, ObjectTracker, TrackSettings, ZoneSettings

NAMES = ("person", "bicycle", "car", "truck", "cell phone")
TRIANGLE = [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]


def zone(**overrides) -> dict:
    return {"name": "door", "points": TRIANGLE, **overrides}


@pytest.mark.parametrize("settings, field, message", [
    ({"zones": [zone(points=[[0.1, 0.1], [0.9, 0.1]])]}, "zones[0].points", "needs at least 3 points, received 2"),
    ({"zones": [zone(points=[[0.1, 0.1], [1.2, 0.1], [0.5, 0.9]])]}, "zones[0].points", "point [1.2, 0.1] is outside the frame"),
    ({"zones": [zone(points=[[0.1, -0.1], [0.2, 0.1], [0.5, 0.9]])]}, "zones[0].points", "point [0.1, -0.1] is outside"),
    ({"zones": [zone(points="somewhere")]}, "zones[0].points", "list of [x, y] pairs"),
    ({"zones": [zone(), zone()]}, "zones", "'door' is used twice"),
    ({"zones": [zone(name="status")]}, "zones[0].name", "taken by edge-yolo's own topics"),
    ({"zones": [zone(name="front door")]}, "zones[0].name", "cannot be a topic level"),
    ({"zones": [zone(labels=["car"])]}, "zones[0].labels", "'car' is not tracked; add it to [track] labels"),
    ({"zones": [zone(anchor="top")]}, "zones[0].anchor", "allowed: 'bottom', 'center'"),
    ({"zones": [{"name": "door", "points": TRIANGLE, "colour": "red"}]}, "zones[0].colour", "unknown key"),
    ({"zones": [{"points": TRIANGLE}]}, "zones[0].name", "is required"),
    ({"zones": ["door"]}, "zones[0]", "must be a table"),
    ({"lines": [{"name": "gate", "points": [[0, 0.5], [1, 0.5], [1, 1]]}]}, "lines[0].points", "needs exactly 2 points"),
    ({"lines": [{"name": "gate", "points": [[0.5, 0.5], [0.5, 0.5]]}]}, "lines[0].points", "the two ends are the same point"),
    ({"zones": [zone(name="gate")], "lines": [{"name": "gate", "points": [[0, 0.5], [1, 0.5]]}]}, "zones", "used twice"),
    ({"low_score": 0.6}, "high_score", "low-score <= high-score <= new-score"),
    ({"high_score": 1.5}, "high_score", "must be between"),
    ({"min_hits": 0}, "min_hits", "at least 1"),
    ({"lost_s": 0}, "lost_s", "greater than 0"),
    ({"stationary_lost_s": 1.0}, "stationary_lost_s", "at least lost-after"),
    ({"labels": []}, "labels", "at least one label"),
    ({"aliases": [{"label": "car", "merge": []}]}, "aliases[0].merge", "needs at least one label"),
    ({"aliases": [{"label": "car"}]}, "aliases[0].merge", "is required"),
    ({"aliases": [{"label": "car", "merge": ["truck"]}, {"label": "vehicle", "merge": ["truck"]}]}, "aliases[1].merge",
     "'truck' is merged into 'car' already"),
    ({"aliases": [{"label": "car", "merge": ["truck"]}, {"label": "vehicle", "merge": ["car"]}]}, "aliases[0].label",
     "'car' is itself merged into 'vehicle'"),
])
def test_bad_track_settings_name_the_key(settings, field, message):
    with pytest.raises(InvalidSetting) as error:
        TrackSettings(**settings)
    assert error.value.field == field
    assert message in error.value.message and "\n" not in str(error.value)


@pytest.mark.parametrize("settings, field, message", [
    ({"labels": ["person", "unicorn"]}, "labels", "the model has no label 'unicorn'"),
    ({"aliases": [{"label": "car", "merge": ["car", "hovercraft"]}], "labels": ["car"]}, "aliases[0].merge",
     "no label 'hovercraft'"),
    ({"labels": ["all"], "aliases": [{"label": "all", "merge": ["car"]}]}, "labels", "'all' names the totals"),
])
def test_labels_are_checked_against_the_model(settings, field, message):
    with pytest.raises(InvalidSetting) as error:
        ObjectTracker(TrackSettings(**settings), NAMES)
    assert error.value.field == field and message in error.value.message


def test_good_settings_are_kept_and_aliases_add_labels():
    settings = TrackSettings(labels=("person", "vehicle"), aliases=[{"label": "vehicle", "merge": ["car", "truck"]}],
                             zones=[zone(labels=["vehicle"], anchor="center")],
                             lines=[LineSettings(name="gate", points=((0.0, 0.5), (1.0, 0.5)))])
    assert settings.zones[0] == ZoneSettings(name="door", points=tuple(map(tuple, TRIANGLE)), labels=("vehicle",), anchor="center")
    assert settings.active and not TrackSettings().active
    tracker = ObjectTracker(settings, NAMES)
    assert tracker.labels.names[-1] == "vehicle"
    assert tracker.count_topics == ("door/vehicle", "all/person", "all/vehicle", "gate/person/in", "gate/person/out",
                                    "gate/vehicle/in", "gate/vehicle/out", "door/all")


@pytest.mark.parametrize("settings, field", [({"snapshot_gain": 0}, "snapshot_gain"), ({"snapshot_wait_s": -1}, "snapshot_wait_s")])
def test_bad_event_settings_name_the_key(settings, field):
    with pytest.raises(InvalidSetting) as error:
        EventSettings(**settings)
    assert error.value.field == field
