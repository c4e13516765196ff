"""worker/pipeline/align.py on synthetic dancers whose timing is known: lags, group synchrony, DTW (numpy only).

The dancers are mock mode's kinematic dancer (worker/analysis/mock.py): a swaying, bouncing
torso, waving arms and stepping legs on a tempo. Its arm wave repeats every 1 / tempo seconds,
so the tempo here (0.75 Hz, a 1.33 s period) keeps the lag window (+-1 s) under one period.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from shared.result_schemas import validate
from shared.skeletons import COCO17
from worker.analysis.mock import DancerStyle, dancer_keypoints
from worker.pipeline.align import (
    NotEnoughPose,
    PoseSeries,
    align,
    angle_features,
    group_synchrony,
    lag_between,
    normalised_keypoints,
)

FPS = 30.0
SIZE = (1280, 720)
K = len(COCO17.keypoints)
STYLE = DancerStyle(center_x=0.5, height=0.6, tempo_hz=0.75, sway=0.05, phase=0.3, arm_lift=110.0)
OTHER = DancerStyle(center_x=0.5, height=0.6, tempo_hz=1.3, sway=0.02, phase=2.0, arm_lift=40.0)


def motion(times: np.ndarray, style: DancerStyle = STYLE) -> np.ndarray:
    """(T, K, 2) the dancer's keypoints at `times` (seconds)."""
    return np.array([dancer_keypoints(style, float(t), *SIZE) for t in times])


def right_hand_high(points: np.ndarray) -> np.ndarray:
    """The same dance with the right forearm held up: a move that is not its own mirror image."""
    out = points.copy()
    elbow, wrist = COCO17.index("right_elbow"), COCO17.index("right_wrist")
    out[:, wrist] = out[:, elbow] + np.array([0.0, -0.15 * STYLE.height * SIZE[1]])
    return out


def poses_doc(times: np.ndarray, tracks: dict[int, np.ndarray], score: float = 0.9) -> dict[str, Any]:
    """A poses.json document: every track's (T, K, 2) keypoints, with NaN rows where the dancer is not in view."""
    docs = []
    for track_id, points in tracks.items():
        frames = np.flatnonzero(~np.isnan(points[:, 0, 0]))
        detections = [
            {
                "frame": int(f),
                "time": float(times[f]),
                "box": [*points[f].min(axis=0).tolist(), *points[f].max(axis=0).tolist()],
                "score": score,
                "keypoints": [[float(x), float(y), score] for x, y in points[f]],
                "keypoints_raw": [[float(x), float(y), score] for x, y in points[f]],
                "interpolated": False,
            }
            for f in frames
        ]
        first, last = float(times[frames[0]]), float(times[frames[-1]])
        docs.append(
            {"track_id": track_id, "frames_in_view": len(frames), "first_time": first, "last_time": last}
            | {"detections": detections}
        )
    return {
        "schema_version": "1.1",
        "job_id": "test",
        "generator": {
            "mode": "mock",
            "profile": "fast",
            "detector": None,
            "pose_model": "mock-kinematic-dancer",
            "tracker": None,
            "smoothing": None,
        },
        "video": {
            "width": SIZE[0],
            "height": SIZE[1],
            "rotation": 0,
            "fps": FPS,
            "duration": float(times[-1]) + 1 / FPS,
            "frame_count": len(times),
            "has_audio": False,
            "codec": "h264",
        },
        "skeleton": COCO17.to_dict(),
        "frames": [{"index": i, "time": float(t)} for i, t in enumerate(times)],
        "tracks": docs,
    }


def series(points: np.ndarray, times: np.ndarray, track_id: int = 1) -> PoseSeries:
    """Through a poses.json document, as the comparison job will read it."""
    return PoseSeries.from_track(poses_doc(times, {track_id: points}), track_id)


def moved(points: np.ndarray, scale: float = 0.6, offset: tuple[float, float] = (-300.0, 80.0)) -> np.ndarray:
    """The same dancer further from the camera and elsewhere in the frame."""
    return (points - np.array(SIZE) / 2) * scale + np.array(SIZE) / 2 + np.array(offset)


def times_for(seconds: float, fps: float = FPS) -> np.ndarray:
    return np.arange(round(seconds * fps)) / fps


# PoseSeries -------------------------------------------------------------------------------------------------


def test_the_fixture_is_a_valid_poses_json() -> None:
    times = times_for(1)
    validate("poses", poses_doc(times, {1: motion(times)}))


def test_from_track_puts_missing_frames_and_unsure_keypoints_as_nan() -> None:
    times = times_for(2)
    points = motion(times)
    points[10:20] = np.nan  # out of view
    doc = poses_doc(times, {3: points})
    doc["tracks"][0]["detections"][0]["keypoints"][0][2] = 0.1  # the model unsure of the nose in frame 0
    s = PoseSeries.from_track(doc, 3)
    assert s.keypoints.shape == (60, K, 2) and s.track_id == 3
    assert np.isnan(s.keypoints[10:20]).all() and not np.isnan(s.keypoints[20:]).any()
    assert np.isnan(s.keypoints[0, 0]).all() and not np.isnan(s.keypoints[0, 1:]).any()
    assert (COCO17.index("left_wrist"), COCO17.index("right_wrist")) in s.pairs and len(s.pairs) == 8
    with pytest.raises(KeyError):
        PoseSeries.from_track(doc, 4)


def test_resampling_bridges_short_gaps_only() -> None:
    """A variable-rate recording onto 30 Hz: 0.2 s holes are filled (linearly in time), 1 s holes are not."""
    times = np.cumsum(np.where(np.arange(240) % 3, 1 / 40, 1 / 20))  # 20-40 fps, like a phone
    points = motion(times)
    seen = ~((times > 2.0) & (times < 2.2)) & ~((times > 4.0) & (times < 5.0))
    points[~seen] = np.nan
    s = series(points, times).resample(30.0)
    assert np.allclose(np.diff(s.times), 1 / 30)
    short = (s.times > 2.0) & (s.times < 2.2)
    long = (s.times > 4.05) & (s.times < 4.95)
    assert not np.isnan(s.keypoints[short]).any()
    assert np.isnan(s.keypoints[long]).all()
    short = (s.times > 1.95) & (s.times < 2.25)  # with the frames next to the hole
    error = np.abs(s.keypoints - motion(s.times))
    body = STYLE.height * SIZE[1]
    assert np.nanmax(error[~long & ~short]) < 0.01 * body  # between frames 25-50 ms apart: linear is near exact
    assert np.max(error[short]) < 0.05 * body  # across the 0.2 s hole a waving wrist is cut short a little


def test_normalised_poses_ignore_position_and_scale_and_mirror_swaps_sides() -> None:
    times = times_for(3)
    a, b = series(motion(times), times), series(moved(motion(times)), times)
    assert np.allclose(normalised_keypoints(a), normalised_keypoints(b), atol=1e-6)
    hips = normalised_keypoints(a)[:, [COCO17.index("left_hip"), COCO17.index("right_hip")]]
    assert np.allclose(hips.mean(axis=1), 0, atol=1e-9)
    mirrored = normalised_keypoints(a, mirror=True)
    left, right = COCO17.index("left_wrist"), COCO17.index("right_wrist")
    assert np.allclose(mirrored[:, left, 0], -normalised_keypoints(a)[:, right, 0])
    assert np.allclose(angle_features(a)[0], angle_features(b)[0], atol=1e-6)  # angles don't care either


def test_a_dancer_without_a_torso_cannot_be_normalised() -> None:
    times = times_for(1)
    points = motion(times)
    points[:, COCO17.index("left_hip")] = np.nan
    with pytest.raises(NotEnoughPose):
        normalised_keypoints(series(points, times))


# Lag --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lag_s", [0.12, -0.12, 0.0, 0.37])
def test_a_time_shifted_copy_gives_its_lag_and_a_high_similarity(lag_s: float) -> None:
    times = times_for(12)
    a = series(motion(times), times)
    b = series(motion(times - lag_s), times)  # b does at t what a did at t - lag: behind by lag
    found = lag_between(a, b)
    assert abs(found.seconds - lag_s) < 1 / FPS, found
    assert found.similarity > 0.95, found


def test_a_moved_and_scaled_copy_gives_the_same_lag() -> None:
    times = times_for(12)
    found = lag_between(series(motion(times), times), series(moved(motion(times - 0.12)), times))
    assert abs(found.seconds - 0.12) < 1 / FPS and found.similarity > 0.95, found


def test_unrelated_motion_correlates_less() -> None:
    times = times_for(12)
    found = lag_between(series(motion(times), times), series(motion(times, OTHER), times))
    assert found.similarity < 0.6, found


# Group synchrony --------------------------------------------------------------------------------------------


def group(times: np.ndarray, lags: list[float], noise: float = 1.5, seed: int = 0) -> list[np.ndarray]:
    """Dancers of one choreography at different places and sizes, each `lag` seconds behind, with pixel noise."""
    rng = np.random.default_rng(seed)
    out = []
    for n, lag in enumerate(lags):
        points = moved(motion(times - lag), scale=0.5 + 0.15 * n, offset=(-450 + 300 * n, 40 * (n % 2)))
        out.append(points + rng.normal(0, noise, points.shape))
    return out


def test_the_late_dancer_is_reported_late_and_the_others_on_time() -> None:
    times = times_for(15)
    dancers = group(times, [0.0, 0.0, 0.2, 0.0])
    doc = poses_doc(times, {n + 1: points for n, points in enumerate(dancers)})
    result = group_synchrony([PoseSeries.from_track(doc, n + 1) for n in range(4)])
    lags = {d.track_id: d.lag_s for d in result.dancers}
    assert abs(lags[3] - 0.2) < 1 / FPS, lags
    assert all(abs(lags[t]) < 0.5 / FPS for t in (1, 2, 4)), lags
    assert all(d.similarity > 0.9 for d in result.dancers), result.dancers
    json.dumps(result.to_dict(), allow_nan=False)  # metrics.json material: plain JSON, null for unknowns
    late = result.to_dict()["dancers"][2]
    assert late["track_id"] == 3 and late["lag_ms"] == pytest.approx(200, abs=1000 / FPS), late


def test_a_dancer_doing_something_else_is_where_the_group_is_least_together() -> None:
    times = times_for(15)
    dancers = group(times, [0.0, 0.0, 0.0, 0.0])
    astray = (times >= 8.0) & (times < 10.0)
    dancers[1][astray] = moved(motion(times[astray], OTHER), scale=0.65, offset=(-150, 40))
    doc = poses_doc(times, {n + 1: points for n, points in enumerate(dancers)})
    result = group_synchrony([PoseSeries.from_track(doc, n + 1) for n in range(4)], moments=3)
    worst = result.moments[0]
    assert worst.start >= 8.0 - 0.5 and worst.end <= 10.0 + 0.5, result.moments
    assert worst.furthest == 2
    assert worst.spread_deg > 3 * float(np.nanmedian(result.spread_deg))
    assert all(b.start >= a.end or a.start >= b.end for a in result.moments for b in result.moments if a is not b)


def test_group_synchrony_needs_two_dancers_and_copes_with_one_arriving_late() -> None:
    times = times_for(10)
    a, b = group(times, [0.0, 0.1])
    b[: round(3 * FPS)] = np.nan  # enters after 3 s
    doc = poses_doc(times, {1: a, 2: b})
    result = group_synchrony([PoseSeries.from_track(doc, 1), PoseSeries.from_track(doc, 2)])
    assert abs(result.dancers[1].lag_s - 0.1) < 1 / FPS and abs(result.dancers[0].lag_s + 0.1) < 1 / FPS
    assert np.isnan(result.spread_deg[: round(2.9 * FPS)]).all()
    with pytest.raises(ValueError):
        group_synchrony([PoseSeries.from_track(doc, 1)])


def test_a_passer_by_gets_no_verdict_and_does_not_stop_the_others() -> None:
    times = times_for(10)
    a, b, c = group(times, [0.0, 0.1, 0.0])
    c[: round(9 * FPS)] = np.nan  # in view for the last second only
    doc = poses_doc(times, {1: a, 2: b, 3: c})
    result = group_synchrony([PoseSeries.from_track(doc, n) for n in (1, 2, 3)])
    assert abs(result.dancers[1].lag_s - 0.1) < 1 / FPS
    assert result.to_dict()["dancers"][2] == {"track_id": 3, "lag_ms": None, "similarity": None}


# Compare with a reference (DTW) -----------------------------------------------------------------------------


def warp(times: np.ndarray, depth: float = 0.2, hz: float = 0.1) -> np.ndarray:
    """The reference time an attempt shows at each of its `times`: its speed varies 1 +- `depth`."""
    return times + depth / (2 * math.pi * hz) * np.sin(2 * math.pi * hz * times)


def test_a_time_warped_copy_aligns_back() -> None:
    times = times_for(20)
    reference = series(motion(times), times)
    attempt = series(moved(motion(warp(times))), times)
    result = align(reference, attempt)
    # The truth: the attempt time t' with warp(t') = each reference time.
    truth = np.interp(result.times, warp(times), times)
    error = np.abs(result.matched_time - truth) * FPS
    inner = (result.times > 0.5) & (result.times < result.times[-1] - 0.5)
    assert np.median(error[inner]) < 1.0 and np.percentile(error[inner], 95) < 2.0, np.percentile(error, [50, 95, 100])
    assert result.score > 0.9 and np.nanmin(result.similarity[inner]) > 0.7, result.score
    assert not result.mirrored and result.other_score is None

    unrelated = align(reference, series(motion(times, OTHER), times))
    assert unrelated.score < result.score - 0.3, (unrelated.score, result.score)


def test_a_mirrored_copy_matches_only_with_mirroring_on() -> None:
    times = times_for(12)
    dance = right_hand_high(motion(times))
    mirror_dance = series(right_hand_high(motion(times)), times).mirrored().keypoints + np.array([SIZE[0], 0.0])
    reference, attempt = series(dance, times), series(mirror_dance, times)
    plain = align(reference, attempt, mirror=False)
    mirrored = align(reference, attempt, mirror=True)
    either = align(reference, attempt, mirror=None)
    assert mirrored.score > 0.95 and plain.score < mirrored.score - 0.2, (plain.score, mirrored.score)
    assert either.mirrored and either.score == pytest.approx(mirrored.score)
    assert either.other_score == pytest.approx(plain.score)


def test_worst_moments_point_at_the_stretch_that_differs() -> None:
    times = times_for(20)
    attempt = motion(times)
    wrong = (times >= 12.0) & (times < 13.5)
    attempt[wrong] = right_hand_high(attempt[wrong])
    result = align(series(motion(times), times), series(attempt, times), moments=3)
    worst = result.moments[0]
    assert worst.start >= 12.0 - 0.5 and worst.end <= 13.5 + 0.5, result.moments
    assert worst.worst_keypoints[0] == "right_wrist"
    assert abs(worst.attempt_start - worst.start) < 0.2
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["worst_moments"][0]["worst_keypoints"][0] == "right_wrist"
    assert len(data["series"]["time"]) == len(data["series"]["keypoints"]["nose"]) == len(result.times)


def test_the_band_defaults_to_a_tenth_of_the_longer_video_and_an_attempt_longer_than_the_reference_aligns() -> None:
    reference_times, attempt_times = times_for(10), times_for(12)
    reference = series(motion(reference_times), reference_times)
    slow = series(motion(attempt_times * 10 / 12), attempt_times)  # the whole dance, 20% slower
    result = align(reference, slow)
    assert result.band_s == pytest.approx(2.0)
    assert np.median(np.abs(result.matched_time - result.times * 1.2)) * FPS < 1.0
    assert result.score > 0.9


def full_dtw(x: np.ndarray, y: np.ndarray, step_penalty: float) -> float:
    """The textbook recurrence over the whole matrix, cell by cell: the reference the banded, vectorised
    dtw_band must agree with. Costs are the mean squared distance over keypoints seen in both poses
    (MISSING_COST where none is), as dtw_band's."""
    from worker.pipeline.align import MISSING_COST

    n, m = len(x), len(y)
    cost = np.empty((n, m))
    for i in range(n):
        diff = ((x[i][None] - y) ** 2).sum(axis=2)  # (m, K), NaN where either is unseen
        seen = ~np.isnan(diff)
        cost[i] = np.where(seen.any(axis=1), np.nansum(diff, axis=1) / np.maximum(seen.sum(axis=1), 1), MISSING_COST)
    total = np.full((n, m), np.inf)
    for i in range(n):
        for j in range(m):
            if i == 0 and j == 0:
                total[i, j] = cost[0, 0]
                continue
            best = min(
                total[i - 1, j - 1] if i and j else np.inf,
                total[i - 1, j] + step_penalty if i else np.inf,
                total[i, j - 1] + step_penalty if j else np.inf,
            )
            total[i, j] = cost[i, j] + best
    return float(total[-1, -1])


def path_cost(x: np.ndarray, y: np.ndarray, path: np.ndarray, step_penalty: float) -> float:
    """What a warping path costs under the same recurrence, checking that it is one (monotone, unit steps)."""
    from worker.pipeline.align import MISSING_COST

    assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (len(x) - 1, len(y) - 1)
    steps = np.diff(path, axis=0)
    assert {tuple(s) for s in steps} <= {(1, 1), (1, 0), (0, 1)}, "not a warping path"
    total = 0.0
    for i, j in path:
        diff = ((x[i] - y[j]) ** 2).sum(axis=1)
        seen = ~np.isnan(diff)
        total += float(diff[seen].mean()) if seen.any() else MISSING_COST
    return total + step_penalty * int((steps.sum(axis=1) == 1).sum())


@pytest.mark.parametrize(("n", "m", "radius"), [(90, 90, 200), (120, 90, 200), (150, 150, 30), (160, 130, 25)])
def test_the_banded_dtw_finds_the_full_matrix_optimum(n: int, m: int, radius: int) -> None:
    """dtw_band against the plain full-matrix recurrence, on a time-warped copy with unseen keypoints and
    a stretch where the attempt is out of view: the same optimal cost, and a path that costs exactly that.
    A band of 200 frames covers the whole matrix; one of 25-30 frames holds a +-20 % warp."""
    from worker.pipeline.align import STEP_PENALTY, dtw_band

    rng = np.random.default_rng(n + m)
    ref_times, att_times = np.arange(n) / FPS, np.arange(m) / FPS
    x = normalised_keypoints(series(motion(ref_times * 2), ref_times))
    y = normalised_keypoints(series(moved(motion(warp(att_times * 2 * n / m, hz=0.2))), att_times))
    x[rng.random(x.shape[:2]) < 0.1] = np.nan  # unsure keypoints
    y[m // 3 : m // 3 + 5] = np.nan  # the attempt out of view for 5 frames
    path, mean_cost = dtw_band(x, y, radius, STEP_PENALTY)
    expected = full_dtw(x, y, STEP_PENALTY)
    assert mean_cost * len(path) == pytest.approx(expected, rel=1e-9)
    assert path_cost(x, y, path, STEP_PENALTY) == pytest.approx(expected, rel=1e-9)
