"""What the two test videos show, counted by looking at their frames (extracted every 20 frames, then
around each change, and viewed), and the tracking settings each one needs.

one-by-one-person-detection.mp4 (1394 frames, 10 fps) shows six people, one at a time, each walking to
the table, standing there and leaving; the room is empty between them:
  1 woman, grey cardigan, blond (frames 60-196)     2 man, black jacket (228-447)
  3 woman, long blond hair, black (503-697)         4 man, black T-shirt, glasses (745-865)
  5 woman, dark hair, grey cardigan (922-1197)      6 man, grey shirt, jeans (1235-1358)

car-detection.mp4 (377 frames, 12.5 fps) is a parking lot seen from above; four cars drive through
it and none parks: a white hatchback bottom to top (frames 55-105), a silver car top to bottom
(184-228) while a red one drives bottom to top (189-236), a white coupe top to bottom (316-347).
"""

from tests.edge.edge_testing import frame_budget

PEOPLE_VIDEO = "one-by-one-person-detection.mp4"
PEOPLE_VIDEO_FRAMES = 1394
PEOPLE_FPS = 10.0
PEOPLE = ((60, 196), (228, 447), (503, 697), (745, 865), (922, 1197), (1235, 1358))  # (first, last) frame in view
# The frames the tests read (one inference pass per video, shared through the `replay` fixture);
# emulated, where a frame costs a second: up to the first person, the first car
PEOPLE_TEST_FRAMES = frame_budget(PEOPLE_VIDEO_FRAMES, 70)
TABLE = {"name": "table", "points": [[0.4, 0.5], [0.75, 0.5], [0.75, 1.0], [0.4, 1.0]]}

CAR_VIDEO = "car-detection.mp4"
CAR_VIDEO_FRAMES = 377
CAR_FPS = 12.5
CARS = 4
CAR_TEST_FRAMES = frame_budget(CAR_VIDEO_FRAMES, 90)
# Seen from above, yolov5n at 320 rarely says "car": it calls these cars "cell phone" most often, then
# "car", "bus", "boat" or "suitcase" (the label counts of its detections on this video). Merging those
# names is what [[track.aliases]] is for; the scores are low too (0.1-0.85), hence the lower thresholds.
CAR_TRACKING = {"labels": ("car",), "high_score": 0.25, "new_score": 0.3,
                "aliases": [{"label": "car", "merge": ["car", "cell phone", "bus", "truck", "boat", "suitcase"]}]}
NEAR_HALF = {"name": "near", "points": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]], "anchor": "center"}
# Cars whose centre is in the lower half, read off the frames at least 3 frames from any change. The red
# car of frames 190-230 comes in through the bottom edge: cut off by it until about frame 202, detected
# from 203 (fp32 and int8 alike) and counted once the tracker confirms it (207), so no checkpoint falls
# in 195-206, where the figure would measure how early the detector sees half a car.
NEAR_COUNTS = {40: 0, 77: 1, 95: 0, 150: 0, 210: 2, 220: 1, 260: 0, 300: 0, 340: 1, 365: 0}
