"""The one per-frame record: rows indexed together, per-track views, per-frame lookups."""

from __future__ import annotations

import numpy as np
import pytest

from shared.skeletons import COCO17
from worker.pipeline.records import Detections, PoseSequence

K = len(COCO17.keypoints)


def people(track_ids: list[int], frame: int) -> Detections:
    n = len(track_ids)
    boxes = np.array([[10 * t, frame, 10 * t + 5, frame + 20] for t in track_ids], np.float32).reshape(n, 4)
    keypoints = np.full((n, K, 3), frame, np.float32)
    return Detections.create(boxes, np.full(n, 0.9), keypoints, track_ids=track_ids).in_frame(frame)


def test_indexing_applies_to_every_array_and_raw_keypoints_start_as_a_copy():
    dets = people([3, 1, 2], frame=4)
    picked = dets[dets.track_ids != 1]
    assert list(picked.track_ids) == [3, 2] and picked.boxes.shape == (2, 4) and picked.keypoints.shape == (2, K, 3)
    assert list(picked.frames) == [4, 4] and not picked.interpolated.any()
    dets.keypoints[0, 0, 0] = -1
    assert dets.keypoints_raw[0, 0, 0] == 4  # a copy, not the same array
    assert len(Detections.empty(K)) == 0 and Detections.concat([], K).keypoints.shape == (0, K, 3)
    with pytest.raises(ValueError, match="keypoints must be"):
        Detections.create(np.zeros((2, 4)), np.zeros(2), np.zeros((3, K, 3)))


def test_sequence_gives_tracks_as_views_and_every_frame_once():
    frames = [people([2, 1], 0), people([1], 1), people([], 2), people([1, 2], 3)]
    seq = PoseSequence.from_frames(COCO17, [0.0, 0.1, 0.2, 0.3], frames, {})
    assert seq.track_ids() == [1, 2]
    tracks = dict(seq.tracks())
    assert list(tracks[1].frames) == [0, 1, 3] and list(tracks[2].frames) == [0, 3]
    tracks[2].keypoints[:] = 7.0  # a view: the write lands in the sequence
    assert (seq.people.keypoints[seq.people.track_ids == 2] == 7.0).all()
    by_frame = list(seq.frames())
    assert [list(f.track_ids) for f in by_frame] == [[1, 2], [1], [], [1, 2]]
    assert all((f.frames == i).all() for i, f in enumerate(by_frame))
