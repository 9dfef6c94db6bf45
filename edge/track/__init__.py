"""Objects, not frames: detections of each frame matched into tracks (``tracker``), counted in zones
and across lines (``zones``), and told as events only when there is news (``events``); ``objects``
ties them into the stage the pipeline runs after the detector."""

from edge.track.events import EVENT_END, EVENT_NEW, EVENT_UPDATE, ObjectEvent, ObjectState, Snapshot
from edge.track.labels import LabelMap, label_slug
from edge.track.objects import WHOLE_FRAME, ObjectsUpdate, ObjectTracker, frame_clock
from edge.track.settings import EventSettings, LineSettings, TrackSettings, ZoneSettings
from edge.track.tracker import Tracker, TrackerUpdate, Tracks

__all__ = ["EVENT_END", "EVENT_NEW", "EVENT_UPDATE", "ObjectEvent", "ObjectState", "Snapshot", "LabelMap", "label_slug",
           "WHOLE_FRAME", "ObjectsUpdate", "ObjectTracker", "frame_clock", "EventSettings", "LineSettings",
           "TrackSettings", "ZoneSettings", "Tracker", "TrackerUpdate", "Tracks"]
