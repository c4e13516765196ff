"""The smooth stage on synthetic tracks: fast moves keep their size, jitter goes, no lag, gaps, edges (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from shared.profiles import Profile
from shared.skeletons import COCO17
from tests.motion import amplitude_and_lag, jitter, whole_cycles
from worker.pipeline.records import Detections, PoseSequence
from worker.pipeline.smooth import loess, smooth_sequence

K = len(COCO17.keypoints)
BODY = 200.0  # px, the dancer's height
SIZE = (1280, 720)


def sequence(tracks: dict[int, dict[int, np.ndarray]], times: np.ndarray, scores: float | np.ndarray = 0.9):
    """tracks: {track_id: {frame: (K, 2) xy}} -> PoseSequence with boxes BODY tall."""
    frames = []
    for i in range(len(times)):
        people = [(tid, points[i]) for tid, points in tracks.items() if i in points]
        xy = np.array([p for _, p in people]).reshape(-1, K, 2)
        kps = np.concatenate([xy, np.broadcast_to(np.asarray(scores, float), (len(people), K))[..., None]], axis=2)
        cx, cy = xy.mean(axis=1).T if len(people) else (np.zeros(0), np.zeros(0))
        boxes = np.c_[cx - 50, cy - BODY / 2, cx + 50, cy + BODY / 2]
        dets = Detections.create(boxes, np.full(len(people), 0.9), kps, track_ids=[tid for tid, _ in people])
        frames.append(dets.in_frame(i))
    return PoseSequence.from_frames(COCO17, times, frames, {"mode": "real", "smoothing": None})


def sine_motion(hz: float, amplitude: float, times: np.ndarray, noise: float, seed: int = 0):
    """Every keypoint moves sideways on a sine of `amplitude` (share of body height); returns (truth, noisy) (T, K)."""
    rng = np.random.default_rng(seed)
    truth = 400 + amplitude * BODY * np.sin(2 * np.pi * hz * times)[:, None] + np.arange(K)[None, :]
    noisy = truth + rng.normal(0, noise * BODY, truth.shape)
    return truth, noisy


def smoothed_x(noisy: np.ndarray, times: np.ndarray) -> np.ndarray:
    points = {i: np.c_[noisy[i], np.full(K, 300.0)] for i in range(len(times))}
    seq = smooth_sequence(sequence({1: points}, times), *SIZE)
    (_, track), *_ = seq.tracks()
    return track.keypoints[..., 0].astype(np.float64)


@pytest.mark.parametrize(
    ("hz", "amplitude"),
    [(3.0, 0.05), (3.0, 0.10), (2.0, 0.05), (1.0, 0.20)],
    ids=["3Hz-5%", "3Hz-10%", "2Hz-5%", "1Hz-20%"],
)
@pytest.mark.parametrize("fps", [30.0, 60.0, 24.0])
def test_fast_moves_keep_their_size_with_no_lag_and_less_jitter(hz, amplitude, fps):
    """The issue's bar: >= 0.9 of the amplitude kept at 3 Hz for moves of 5% of body height or more,
    lag <= 1 frame, jitter cut >= 2x. Noise: 1% of body height per frame, about what YOLO gives a small dancer."""
    times = np.arange(round(4 * fps)) / fps
    truth, noisy = sine_motion(hz, amplitude, times, noise=0.01)
    smooth = smoothed_x(noisy, times)
    cycles = whole_cycles(times, hz)
    measured = np.array([amplitude_and_lag(smooth[cycles, k], truth[cycles, k], times[cycles], hz) for k in range(K)])
    kept, lag = measured[:, 0], measured[:, 1]
    assert np.mean(kept) >= 0.9, np.mean(kept)
    assert abs(np.mean(lag)) * fps <= 1.0, np.mean(lag) * fps
    cut = jitter(noisy[cycles], truth[cycles]) / jitter(smooth[cycles], truth[cycles])
    assert cut >= 2.0, cut


def test_still_dancer_wobbles_less():
    """A held pose: frame-to-frame wobble is cut ~5x; the position error ~1.6x (the price of a short window)."""
    times = np.arange(90) / 30.0
    truth, noisy = sine_motion(1.0, 0.0, times, noise=0.01)
    smooth = smoothed_x(noisy, times)
    inner = slice(10, -10)
    assert jitter(noisy[inner], truth[inner]) / jitter(smooth[inner], truth[inner]) >= 4.0
    assert np.abs(smooth - truth)[inner].mean() < 0.7 * np.abs(noisy - truth)[inner].mean()


def test_variable_frame_rate_uses_the_real_timestamps():
    steps = np.where(np.arange(180) % 3, 1.0, 2.0) / 30.0  # 1x and 2x frame times, like tests/clips.vfr_times
    times = np.r_[0.0, np.cumsum(steps)[:-1]]
    truth, noisy = sine_motion(3.0, 0.05, times, noise=0.01)
    smooth = smoothed_x(noisy, times)
    cycles = whole_cycles(times, 3.0)
    kept, lag = amplitude_and_lag(smooth[cycles, 0], truth[cycles, 0], times[cycles], 3.0)
    assert kept >= 0.85 and abs(lag) < 1 / 30


def test_unsure_keypoints_count_little():
    """One frame where the model was unsure and put a wrist far off barely moves the smoothed wrist."""
    times = np.arange(30) / 30.0
    xy = np.tile([[400.0, 300.0]], (K, 1))
    points = {i: xy.copy() for i in range(30)}
    points[15] = xy.copy()
    points[15][9] = [520.0, 300.0]  # left wrist, 120 px off
    scores = np.full((30, K), 0.9)
    scores[15, 9] = 0.02
    frames = []
    for i in range(30):
        kps = np.c_[points[i], scores[i]][None]
        frames.append(Detections.create([[350, 200, 450, 400]], [0.9], kps, track_ids=[1]).in_frame(i))
    seq = smooth_sequence(PoseSequence.from_frames(COCO17, times, frames, {}), *SIZE)
    wrist = seq.people.keypoints[:, 9, 0]
    assert abs(wrist[15] - 400) < 10, wrist[15]
    assert seq.people.keypoints_raw[15, 9, 0] == 520.0  # the model's value is kept


def test_loess_passes_a_quadratic_through_exactly_and_handles_short_runs():
    times = np.arange(12) / 30.0
    values = (3 * times**2 - 2 * times + 1)[:, None, None] * np.ones((1, 2, 2))
    fitted = loess(times, values, np.ones((12, 2)), half_window=2 / 15)
    np.testing.assert_allclose(fitted, values, atol=1e-9)
    np.testing.assert_allclose(loess(times[:2], values[:2], np.ones((2, 2)), 2 / 15), values[:2], atol=1e-9)
    np.testing.assert_allclose(loess(times[:1], values[:1], np.ones((1, 2)), 2 / 15), values[:1])


def test_short_gaps_are_interpolated_and_marked_long_ones_are_not():
    times = np.arange(40) / 30.0
    base = np.tile([[100.0, 100.0]], (K, 1))
    points = {i: base + np.array([i, 0.0]) for i in range(40) if not (10 <= i < 13 or 20 <= i < 30)}
    seq = smooth_sequence(sequence({1: points}, times), *SIZE)
    people = seq.people
    assert list(people.frames[people.interpolated]) == [10, 11, 12]
    filled = people[people.interpolated]
    assert np.isnan(filled.keypoints_raw).all()
    expected_x = np.broadcast_to(100.0 + filled.frames[:, None], (3, K))
    np.testing.assert_allclose(filled.keypoints[:, :, 0], expected_x, atol=0.5)
    assert not set(range(20, 30)) & set(people.frames.tolist())
    assert "loess" in seq.generator["smoothing"]


def test_keypoints_outside_the_frame_are_put_on_its_edge_as_not_seen():
    times = np.arange(10) / 30.0
    xy = np.tile([[40.0, 300.0]], (K, 1))
    xy[15] = [-35.0, 300.0]  # an ankle the model guessed beyond the left edge
    xy[16] = [40.0, 760.0]  # one below the bottom
    seq = smooth_sequence(sequence({1: {i: xy.copy() for i in range(10)}}, times), *SIZE)
    kps = seq.people.keypoints
    assert (kps[:, 15, 2] == 0).all() and (kps[:, 16, 2] == 0).all()
    np.testing.assert_allclose(kps[:, 15, 0], 0.0)
    np.testing.assert_allclose(kps[:, 16, 1], SIZE[1])
    assert (kps[:, :15, 2] > 0.5).all()
    np.testing.assert_allclose(seq.people.keypoints_raw[:, 15, 0], -35.0)


def test_smoothing_is_idempotent_and_keeps_tracks_apart():
    rng = np.random.default_rng(2)
    times = np.arange(30) / 30.0
    a = {i: np.tile([[100.0, 100.0]], (K, 1)) + rng.normal(0, 1, (K, 2)) for i in range(30)}
    b = {i: np.tile([[400.0, 100.0]], (K, 1)) + rng.normal(0, 1, (K, 2)) for i in range(30) if i != 7}
    seq = smooth_sequence(sequence({1: a, 2: b}, times), *SIZE)
    once = seq.people.keypoints.copy()
    again = smooth_sequence(seq, *SIZE)
    assert len(again.people) == 60  # track 2's one-frame gap filled, once
    np.testing.assert_allclose(again.people.keypoints, once)
    for track_id, track in again.tracks():
        centre = 100 if track_id == 1 else 400
        assert np.all(np.abs(track.keypoints[..., 0].mean(axis=1) - centre) < 5)


def test_mock_sequences_smooth_too(tmp_path):
    from tests.synthetic import make_clip
    from worker.analysis.mock import MockAnalyzer
    from worker.pipeline.probe import probe

    path = tmp_path / "mock.mp4"
    make_clip(path)
    video = probe(path)
    seq = smooth_sequence(MockAnalyzer().analyze(video, Profile.FAST, lambda n: None), video.width, video.height)
    assert len(seq.people) and not seq.people.interpolated.any()
    assert not np.isnan(seq.people.keypoints_raw).any()
    assert seq.people.keypoints.shape == seq.people.keypoints_raw.shape
