"""Smoothing, gap filling, the tracker and model checks without running a model (fast, numpy only)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from shared.errors import ErrorCode, ServiceError
from shared.skeletons import COCO17
from tests.tools import missing_tool
from worker.pipeline.records import Detection, FramePoses, PoseSequence
from worker.pipeline.smooth import smooth_sequence

K = len(COCO17.keypoints)


def sequence(tracks: dict[int, dict[int, np.ndarray]], count: int, fps: float = 30.0, box_h: float = 200.0):
    """tracks: {track_id: {frame: (K, 2) xy}} -> PoseSequence with boxes of height `box_h`."""
    frames = []
    for i in range(count):
        dets = []
        for tid, points in tracks.items():
            if i in points:
                xy = points[i]
                kps = np.c_[xy, np.full(K, 0.9)].astype(np.float32)
                cx, cy = xy.mean(axis=0)
                box = np.array([cx - 50, cy - box_h / 2, cx + 50, cy + box_h / 2], np.float32)
                dets.append(Detection(track_id=tid, box=box, score=0.9, keypoints=kps, keypoints_raw=kps.copy()))
        frames.append(FramePoses(index=i, time=i / fps, detections=dets))
    return PoseSequence(skeleton=COCO17, frames=frames, generator={"mode": "real", "smoothing": None})


def test_short_gaps_are_interpolated_and_marked_long_ones_are_not():
    base = np.tile([[100.0, 100.0]], (K, 1))
    points = {i: base + np.array([i, 0.0]) for i in range(40) if not (10 <= i < 13 or 20 <= i < 30)}
    seq = smooth_sequence(sequence({1: points}, 40))
    filled = [f.index for f in seq.frames if f.detections and f.detections[0].interpolated]
    assert filled == [10, 11, 12]
    for i in filled:
        det = seq.frames[i].detections[0]
        assert det.keypoints_raw is None
        np.testing.assert_allclose(det.keypoints[:, 0], 100 + i, atol=0.5)
    assert all(not seq.frames[i].detections for i in range(20, 30))
    assert "one-euro" in seq.generator["smoothing"]


def test_jitter_is_removed_without_lag_and_raw_values_are_kept():
    rng = np.random.default_rng(1)
    t = np.arange(90) / 30.0
    truth = {i: np.tile([[300 + 60 * np.sin(2 * np.pi * 0.5 * t[i]), 200.0]], (K, 1)) for i in range(90)}
    noisy = {i: p + rng.normal(0, 2.0, p.shape) for i, p in truth.items()}
    seq = smooth_sequence(sequence({1: noisy}, 90))
    smooth = np.array([f.detections[0].keypoints[:, 0] for f in seq.frames])
    raw = np.array([f.detections[0].keypoints_raw[:, 0] for f in seq.frames])
    true_x = np.array([truth[i][:, 0] for i in range(90)])
    np.testing.assert_allclose(raw, np.array([noisy[i][:, 0] for i in range(90)]), atol=1e-3)
    assert np.abs(smooth - true_x)[5:-5].mean() < 0.8 * np.abs(raw - true_x)[5:-5].mean()
    # Jitter as seen on screen: frame-to-frame wobble around the true path.
    wobble = lambda x: np.abs(np.diff(x - true_x, 2, axis=0))[5:-5].mean()  # noqa: E731
    assert wobble(smooth) < 0.6 * wobble(raw)
    # No lag: the smoothed curve lines up best with the truth at shift 0.
    errors = [np.mean((np.roll(smooth[:, 0], k) - true_x[:, 0])[10:-10] ** 2) for k in range(-3, 4)]
    assert int(np.argmin(errors)) == 3


def test_smoothing_is_idempotent_and_keeps_tracks_apart():
    rng = np.random.default_rng(2)
    a = {i: np.tile([[100.0, 100.0]], (K, 1)) + rng.normal(0, 1, (K, 2)) for i in range(30)}
    b = {i: np.tile([[400.0, 100.0]], (K, 1)) + rng.normal(0, 1, (K, 2)) for i in range(30) if i != 7}
    seq = smooth_sequence(sequence({1: a, 2: b}, 30))
    once = [[d.keypoints.copy() for d in f.detections] for f in seq.frames]
    seq = smooth_sequence(seq)
    twice = [[d.keypoints for d in f.detections] for f in seq.frames]
    for x, y in zip(once, twice, strict=True):
        assert len(x) == len(y) == 2
        for p, q in zip(x, y, strict=True):
            np.testing.assert_allclose(p, q)
    assert all(abs(f.detections[1].keypoints[:, 0].mean() - 400) < 5 for f in seq.frames)


def test_mock_sequences_smooth_too(tmp_path):
    from tests.synthetic import make_clip
    from worker.analysis.mock import MockAnalyzer
    from worker.pipeline.probe import probe

    path = tmp_path / "mock.mp4"
    make_clip(path)
    video = probe(path)
    seq = MockAnalyzer().analyze(video, "fast", lambda n: None)
    seq = smooth_sequence(seq)
    dets = [d for f in seq.frames for d in f.detections]
    assert dets and not any(d.interpolated for d in dets)
    assert all(d.keypoints_raw is not None and d.keypoints.shape == d.keypoints_raw.shape for d in dets)


def test_tracker_keeps_ids_through_crossing_and_a_short_dropout():
    if importlib.util.find_spec("lap") is None:
        missing_tool("lap (pip install -r requirements-gpu.txt)")
    from worker.pipeline.detect_track import ByteTracker, PoseDetections

    tracker = ByteTracker(fps=30)
    seen: dict[int, list[float]] = {}
    for i in range(60):
        xs = [100 + 6 * i, 460 - 6 * i]  # two people walk past each other
        boxes = np.array([[x - 40, 100, x + 40, 300] for x in xs], np.float32)
        scores = np.array([0.9, 0.8], np.float32)
        if 40 <= i < 44:  # the second one is missed for 4 frames
            boxes, scores = boxes[:1], scores[:1]
        dets = PoseDetections(boxes, scores, np.zeros((len(scores), 17, 3), np.float32))
        for track_id, index in tracker.update(dets):
            seen.setdefault(track_id, []).append(float(boxes[index, 0] + 40) - (100 + 6 * i))
    # Two ids, each always on the same walker (offset 0 for the first, the mirror path for the second).
    assert sorted(seen) == [1, 2]
    assert np.allclose(seen[1], 0.0)
    assert len(seen[2]) == 56


def test_missing_models_fail_at_start_saying_how_to_fix(tmp_path):
    from worker.models.runtime import load_models

    with pytest.raises(ServiceError) as caught:
        load_models("cpu", tmp_path / "nothing-here")
    assert caught.value.code == ErrorCode.MODEL_UNAVAILABLE
    assert "python -m worker.models.prepare" in caught.value.message


def test_prefetch_closes_the_decoder_when_the_consumer_stops():
    from worker.analysis.real import prefetch

    closed = []

    def frames():
        try:
            yield from range(100)
        finally:
            closed.append(True)

    for item in prefetch(frames()):
        if item == 3:
            break
    assert closed == [True]
    assert list(prefetch(iter(range(5)))) == [0, 1, 2, 3, 4]
