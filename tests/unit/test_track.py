"""ByteTrack on synthetic boxes: ids through a crossing and a dropout, and where it expects each dancer next."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests.tools import missing_tool
from worker.pipeline.records import Detections


@pytest.fixture(autouse=True)
def _lap() -> None:
    if importlib.util.find_spec("lap") is None:
        missing_tool("lap (pip install -r requirements-gpu.txt)")


def frame(boxes: list[list[float]], scores: list[float]) -> Detections:
    return Detections.create(np.array(boxes).reshape(-1, 4), scores, np.zeros((len(scores), 17, 3)))


def test_tracker_keeps_ids_through_crossing_and_a_short_dropout():
    from worker.pipeline.track import ByteTracker

    tracker = ByteTracker(fps=30)
    seen: dict[int, list[float]] = {}
    for i in range(60):
        xs = [100 + 6 * i, 460 - 6 * i]  # two people walk past each other
        boxes = [[x - 40, 100, x + 40, 300] for x in xs]
        scores = [0.9, 0.8]
        if 40 <= i < 44:  # the second one is missed for 4 frames
            boxes, scores = boxes[:1], scores[:1]
        people = tracker.update(frame(boxes, scores))
        assert list(people.track_ids) == sorted(people.track_ids)
        for track_id, box in zip(people.track_ids, people.boxes, strict=True):
            seen.setdefault(int(track_id), []).append(float(box[0] + 40) - (100 + 6 * i))
    # Two ids, each always on the same walker (offset 0 for the first, the mirror path for the second).
    assert sorted(seen) == [1, 2]
    assert np.allclose(seen[1], 0.0)
    assert len(seen[2]) == 56


def test_expected_boxes_lead_a_moving_dancer_and_forget_long_lost_ones():
    from worker.pipeline.track import ByteTracker

    tracker = ByteTracker(fps=30)
    for i in range(10):  # walks right 5 px a frame
        tracker.update(frame([[100 + 5 * i, 100, 160 + 5 * i, 300]], [0.9]))
    (expected,) = tracker.expected_boxes()
    assert expected[0] == pytest.approx(150, abs=2.0)  # where frame 10 will have it, not where frame 9 had it
    for _ in range(30):  # then nobody is seen for a second
        tracker.update(frame([], []))
    assert len(tracker.expected_boxes(max_lost_seconds=0.5)) == 0
    assert len(tracker.expected_boxes(max_lost_seconds=2.0)) == 1
