"""Aligning dancers in time: how far apart two performances are in time and pose (issue 12's numerical core).

Three questions, one toolbox:
- `lag_between(a, b)`: how many seconds b trails a, and how alike their motion is
  (normalised cross-correlation of joint angles over a bounded lag window).
- `group_synchrony(dancers)`: each dancer against the median of the others, so one
  dancer who is late cannot drag "the group" with them; and the ~1 s moments where
  the dancers' poses differ most.
- `align(reference, attempt)`: dynamic time warping of normalised poses (invariant to
  position and scale, optionally mirrored), so an attempt that speeds up and slows
  down is still compared move by move; similarity per keypoint over the reference's
  time, an overall score and the worst moments.

Everything runs on `PoseSeries`: one dancer's keypoints as arrays on the container's
timestamps, resampled onto a uniform grid before any comparison (phones record at
variable frame rates; correlation and DTW need equal steps). Pure NumPy: the banded
DTW computes each row of the cumulative cost with a prefix-minimum scan, so a pair of
3-minute videos at 30 Hz aligns in seconds (bench/bench_align.py).

Units: times in seconds, lags positive when the second dancer is behind, poses in
torso lengths (shoulder midpoint to hip midpoint), angles in degrees, similarities 0..1.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from shared.skeletons import ANGLE_JOINTS
from worker.pipeline.angles import MIN_SCORE, joint_angles
from worker.pipeline.records import PoseSequence

RATE_HZ = 30.0  # the uniform grid every comparison runs on
MAX_GAP_S = 0.25  # resampling bridges holes up to this long; longer ones stay unknown
MAX_LAG_S = 1.0  # the lag window of the cross-correlation
MIN_OVERLAP = 0.5  # a lag is only considered if the series still overlap on this share of the shorter one
MIN_SHARED_S = 2.0  # ...and both dancers are seen together for this long: a few frames would correlate by chance
# A dancer whose motion correlates less than this with the group's is doing something else: the best of
# the lags tried is then noise (mock dancers at unrelated tempos gave 0.15 and "791 ms behind"), so no lag.
MIN_LAG_SIMILARITY = 0.3
WINDOW_S = 1.0  # the length of a reported moment
# A keypoint this far from its counterpart (in torso lengths) scores exp(-1) = 0.37; at a third of it, 0.9.
SIMILARITY_SCALE = 0.3
# Keypoints count in the overall similarity by how far they travel (torso lengths), plus this floor: the
# limbs that dance weigh more than the trunk, which sits near the centre by construction and would make
# any two people standing upright look alike.
WEIGHT_FLOOR = 0.05
STEP_PENALTY = 0.002  # DTW: cost of a non-diagonal step (torso lengths squared), so held poses don't warp freely
MIN_BAND_S = 2.0  # DTW: the band is at least this wide on either side of the diagonal...
BAND_SHARE = 0.1  # ...and at least this share of the longer series
MISSING_COST = 1.0  # DTW: a frame where either dancer is unseen costs as much as a pose one torso length off


class NotEnoughPose(ValueError):
    """The series never shows what a comparison needs (shoulders and hips for the scale, enough overlap in time)."""


def mirror_pairs(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """(left, right) keypoint index pairs, matched by name: `left_x` with `right_x`."""
    index = {name: i for i, name in enumerate(names)}
    return tuple(
        (i, index["right_" + name[5:]])
        for name, i in index.items()
        if name.startswith("left_") and "right_" + name[5:] in index
    )


@dataclass(frozen=True)
class PoseSeries:
    """One dancer's motion as arrays. Keypoints the model was unsure of, and frames without the dancer, are NaN."""

    times: np.ndarray  # (T,) float64 seconds, from the container's timestamps (uniform once resampled)
    keypoints: np.ndarray  # (T, K, 2) float64 x, y in source pixels; NaN where not seen
    scores: np.ndarray  # (T, K) float64 the model's confidence; 0 where not seen
    names: tuple[str, ...]  # keypoint names in model order
    pairs: tuple[tuple[int, int], ...] = field(default=())  # (left, right) index pairs, from the names if empty
    track_id: int | None = None

    def __post_init__(self) -> None:
        if not self.pairs:
            object.__setattr__(self, "pairs", mirror_pairs(self.names))

    @classmethod
    def from_rows(
        cls,
        times: np.ndarray,
        frames: np.ndarray,
        keypoints: np.ndarray,
        names: Sequence[str],
        track_id: int | None = None,
        min_score: float = MIN_SCORE,
    ) -> PoseSeries:
        """From every decoded frame's time (F,) and one track's rows: frame indices (N,), keypoints (N, K, 3)."""
        times = np.asarray(times, np.float64)
        rows = np.asarray(keypoints, np.float64).reshape(len(frames), len(names), 3)
        xy = np.full((len(times), len(names), 2), np.nan)
        scores = np.zeros((len(times), len(names)))
        frames = np.asarray(frames, np.int64)
        sure = rows[..., 2] >= min_score
        xy[frames] = np.where(sure[..., None], rows[..., :2], np.nan)
        scores[frames] = rows[..., 2]
        return cls(times, xy, scores, tuple(names), track_id=track_id)

    @classmethod
    def from_track(cls, poses: Mapping[str, Any], track_id: int, min_score: float = MIN_SCORE) -> PoseSeries:
        """One track of a poses.json document (shared/schemas/poses.schema.json), on every frame of the video."""
        track = next((t for t in poses["tracks"] if t["track_id"] == track_id), None)
        if track is None:
            raise KeyError(f"poses.json has no track {track_id}")
        times = np.array([frame["time"] for frame in poses["frames"]], np.float64)
        frames = np.array([d["frame"] for d in track["detections"]], np.int64)
        keypoints = np.array([d["keypoints"] for d in track["detections"]], np.float64)
        return cls.from_rows(times, frames, keypoints, poses["skeleton"]["keypoints"], track_id, min_score)

    @classmethod
    def from_sequence(cls, poses: PoseSequence, track_id: int, min_score: float = MIN_SCORE) -> PoseSeries:
        """One track of the worker's in-memory `PoseSequence` (the metrics stage has it; no need to read JSON)."""
        track = poses.people[poses.people.track_ids == track_id]
        if not len(track):
            raise KeyError(f"no track {track_id}")
        return cls.from_rows(poses.times, track.frames, track.keypoints, poses.skeleton.keypoints, track_id, min_score)

    def __len__(self) -> int:
        return len(self.times)

    def index(self, name: str) -> int:
        return self.names.index(name)

    @property
    def seen(self) -> np.ndarray:
        """(T,) bool: frames where at least one keypoint is known."""
        return np.any(~np.isnan(self.keypoints[..., 0]), axis=1)

    def trimmed(self) -> PoseSeries:
        """Without the frames before the dancer is first seen and after they are last seen."""
        seen = np.flatnonzero(self.seen)
        if not len(seen):
            raise NotEnoughPose(f"track {self.track_id} is never seen")
        return self._rows(slice(int(seen[0]), int(seen[-1]) + 1))

    def _rows(self, rows: Any) -> PoseSeries:
        return replace(self, times=self.times[rows], keypoints=self.keypoints[rows], scores=self.scores[rows])

    def mirrored(self) -> PoseSeries:
        """The mirror image: left and right keypoints swap names and x is negated (positions only matter
        relative to the body after normalising, so no frame width is needed)."""
        order = np.arange(len(self.names))
        for left, right in self.pairs:
            order[left], order[right] = right, left
        keypoints = self.keypoints[:, order].copy()
        keypoints[..., 0] *= -1
        return replace(self, keypoints=keypoints, scores=self.scores[:, order])

    def resample(
        self,
        rate_hz: float = RATE_HZ,
        max_gap_s: float = MAX_GAP_S,
        start: float | None = None,
        count: int | None = None,
    ) -> PoseSeries:
        """On a uniform grid `start + i / rate_hz` (by default spanning this series), interpolated linearly in
        time per keypoint. A hole longer than `max_gap_s` between two sightings stays NaN, as does the grid
        beyond the first and last sighting: guessing a pose the camera never saw would fake agreement."""
        start = float(self.times[0]) if start is None else start
        if count is None:
            count = math.floor((self.times[-1] - start) * rate_hz + 1e-6) + 1
        grid = start + np.arange(count) / rate_hz
        xy = np.full((count, len(self.names), 2), np.nan)
        scores = np.zeros((count, len(self.names)))
        slack = 0.5 / rate_hz  # a grid point within half a step of the last sighting still counts as covered
        for k in range(len(self.names)):
            known = ~np.isnan(self.keypoints[:, k, 0])
            t = self.times[known]
            if len(t) == 0:
                continue
            after = np.clip(np.searchsorted(t, grid), 1, max(len(t) - 1, 1))
            gap = t[after] - t[after - 1] if len(t) > 1 else np.zeros(count)
            inside = (grid >= t[0] - slack) & (grid <= t[-1] + slack) & (gap <= max_gap_s + 1e-9)
            for d in range(2):
                xy[inside, k, d] = np.interp(grid[inside], t, self.keypoints[known, k, d])
            scores[inside, k] = np.interp(grid[inside], t, self.scores[known, k])
        return replace(self, times=grid, keypoints=xy, scores=scores)


# Features ---------------------------------------------------------------------------------------------------


def _midpoint(series: PoseSeries, left: str, right: str) -> np.ndarray:
    return (series.keypoints[:, series.index(left)] + series.keypoints[:, series.index(right)]) / 2


def body_frame(series: PoseSeries) -> tuple[np.ndarray, float]:
    """(centre (T, 2), torso length): the hip midpoint, and the median distance from it to the shoulder midpoint.

    Where the hips are unseen, the centre is the shoulder midpoint shifted by the dancer's median
    shoulder-to-hip offset, so that the centre doesn't jump a torso length when the hips drop out of
    view. The median over time keeps one odd frame (a bow, a bad detection) from rescaling the dancer.
    """
    hips = _midpoint(series, "left_hip", "right_hip")
    shoulders = _midpoint(series, "left_shoulder", "right_shoulder")
    torso = hips - shoulders
    both = ~np.isnan(torso).any(axis=1)
    if not both.any():
        raise NotEnoughPose(f"track {series.track_id} never shows both shoulders and both hips")
    length = float(np.median(np.linalg.norm(torso[both], axis=1)))
    if length <= 0:
        raise NotEnoughPose(f"track {series.track_id} has no torso length")
    centre = np.where(np.isnan(hips), shoulders + np.median(torso[both], axis=0), hips)
    return centre, length


def normalised_keypoints(series: PoseSeries, mirror: bool = False) -> np.ndarray:
    """(T, K, 2) keypoints relative to the body's centre, in torso lengths; mirrored first if asked."""
    if mirror:
        series = series.mirrored()
    centre, length = body_frame(series)
    return (series.keypoints - centre[:, None, :]) / length


def angle_features(series: PoseSeries) -> tuple[np.ndarray, tuple[str, ...]]:
    """((T, J) joint angles in degrees, their names): elbows, shoulders, hips and knees, as metrics.json has them.

    Angles need no centring or scaling, and differ little between dancers of different builds,
    which makes them the feature for timing. NaN where a keypoint is unseen."""
    columns, names = [], []
    for joint, (a, vertex, b) in ANGLE_JOINTS:
        if not all(n in series.names for n in (a, vertex, b)):
            continue
        ia, iv, ib = series.index(a), series.index(vertex), series.index(b)
        kp = series.keypoints
        columns.append(joint_angles(kp[:, ia], kp[:, iv], kp[:, ib]))
        names.append(joint)
    return np.stack(columns, axis=1), tuple(names)


# Lag ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lag:
    seconds: float  # positive: the second series is behind (does each move later than) the first
    similarity: float  # 0..1: the correlation of the two at that lag (a negative correlation counts as 0)


def _correlation(a: np.ndarray, b: np.ndarray, min_rows: int) -> float:
    """Pearson correlation of (N, D) arrays pooled over features (each centred on its own mean); NaNs ignored.
    NaN unless at least `min_rows` rows have a feature known in both."""
    known = ~(np.isnan(a) | np.isnan(b))
    if known.any(axis=1).sum() < min_rows:
        return math.nan
    n = known.sum(axis=0)
    use = n >= 2
    if not use.any():
        return math.nan
    a, b, known, n = a[:, use], b[:, use], known[:, use], n[use]
    a0, b0 = np.where(known, a, 0.0), np.where(known, b, 0.0)
    ac = np.where(known, a0 - a0.sum(axis=0) / n, 0.0)
    bc = np.where(known, b0 - b0.sum(axis=0) / n, 0.0)
    denominator = math.sqrt(float((ac * ac).sum()) * float((bc * bc).sum()))
    return float((ac * bc).sum()) / denominator if denominator > 0 else math.nan


def feature_lag(a: np.ndarray, b: np.ndarray, rate_hz: float, max_lag_s: float = MAX_LAG_S) -> Lag:
    """The lag of feature series b (T, D) behind a (T, D), both on the same uniform grid.

    Tries every whole-frame lag within `max_lag_s`, keeps the best correlation, and refines it to a
    fraction of a frame with a parabola through the peak and its neighbours. A strictly repeating
    move looks the same one period later: keep `max_lag_s` under the move's period.
    """
    frames = min(round(max_lag_s * rate_hz), len(a) - 1)
    min_overlap = max(2, int(MIN_OVERLAP * min(len(a), len(b))))
    lags = np.arange(-frames, frames + 1)
    r = np.full(len(lags), np.nan)
    for n, lag in enumerate(int(v) for v in lags):
        # b[t + lag] against a[t]: b doing at t + lag what a did at t.
        lo, hi = max(0, -lag), min(len(a), len(b) - lag)
        if hi - lo >= min_overlap:
            r[n] = _correlation(a[lo:hi], b[lo + lag : hi + lag], max(2, round(MIN_SHARED_S * rate_hz)))
    if np.isnan(r).all():
        raise NotEnoughPose("the two series do not overlap enough in time to compare")
    best = int(np.nanargmax(r))
    shift = 0.0
    if 0 < best < len(lags) - 1 and not np.isnan(r[best - 1 : best + 2]).any():
        left, mid, right = r[best - 1], r[best], r[best + 1]
        curvature = left - 2 * mid + right
        if curvature < 0:
            shift = float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))
    return Lag(seconds=(lags[best] + shift) / rate_hz, similarity=float(np.clip(r[best], 0.0, 1.0)))


def _on_common_grid(series: Sequence[PoseSeries], rate_hz: float) -> list[PoseSeries]:
    """Every series resampled onto one grid spanning all of them (NaN where a series has no data)."""
    start = min(float(s.times[0]) for s in series)
    stop = max(float(s.times[-1]) for s in series)
    count = math.floor((stop - start) * rate_hz + 1e-6) + 1
    return [s.resample(rate_hz, start=start, count=count) for s in series]


def lag_between(a: PoseSeries, b: PoseSeries, *, rate_hz: float = RATE_HZ, max_lag_s: float = MAX_LAG_S) -> Lag:
    """How many seconds b is behind a (negative: ahead), and how alike their joint-angle motion is."""
    ga, gb = _on_common_grid([a, b], rate_hz)
    return feature_lag(angle_features(ga)[0], angle_features(gb)[0], rate_hz, max_lag_s)


# Moments -----------------------------------------------------------------------------------------------------


def _window_mean(values: np.ndarray, width: int) -> np.ndarray:
    """Mean of the known values in a centred window of `width` frames, NaN where none is known."""
    known = ~np.isnan(values)
    sums = np.convolve(np.where(known, values, 0.0), np.ones(width), mode="same")
    counts = np.convolve(known.astype(float), np.ones(width), mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts >= max(1, width // 2), sums / counts, np.nan)


def worst_windows(badness: np.ndarray, width: int, count: int) -> list[tuple[int, int]]:
    """Up to `count` non-overlapping windows [start, stop) of `width` frames with the highest mean `badness`,
    worst first (greedy: take the worst, rule out everything that would overlap it, repeat)."""
    scores = _window_mean(badness, width)
    taken: list[tuple[int, int]] = []
    half = width // 2
    while len(taken) < count and not np.isnan(scores).all():
        centre = int(np.nanargmax(scores))
        start = min(max(0, centre - half), max(0, len(badness) - width))
        taken.append((start, min(start + width, len(badness))))
        scores[max(0, start - half) : start + width + half] = np.nan
    return taken


# Group synchrony ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DancerSync:
    track_id: int | None
    lag_s: float  # positive: behind the group (late); negative: ahead; NaN if never seen long enough with the
    # others, or moving too unlike them (similarity under MIN_LAG_SIMILARITY) for a lag to mean anything
    similarity: float  # 0..1, how alike this dancer's joint-angle motion is to the group's at that lag; or NaN

    def to_dict(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "lag_ms": None if math.isnan(self.lag_s) else round(1000 * float(self.lag_s), 1),
            "similarity": None if math.isnan(self.similarity) else round(self.similarity, 4),
        }


@dataclass(frozen=True)
class GroupMoment:
    start: float  # seconds, video time
    end: float
    spread_deg: float  # mean over the window and the dancers of their RMS joint-angle distance from the group median
    furthest: int | None  # the track id of the dancer furthest from the group in that window

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "spread_deg": round(self.spread_deg, 2),
            "furthest_track_id": self.furthest,
        }


@dataclass(frozen=True)
class GroupSync:
    dancers: list[DancerSync]  # in the order given
    moments: list[GroupMoment]  # least together first
    times: np.ndarray  # (T,) the common grid
    spread_deg: np.ndarray  # (T,) per frame: how far apart the dancers' poses are; NaN with fewer than 2 in view

    def to_dict(self) -> dict[str, Any]:
        return {
            "dancers": [d.to_dict() for d in self.dancers],
            "least_together": [m.to_dict() for m in self.moments],
            "series": {
                "time": [round(float(t), 4) for t in self.times],
                "spread_deg": [None if math.isnan(v) else round(float(v), 2) for v in self.spread_deg],
            },
        }


def _nanmedian(stack: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (nobody in view) are meant to be NaN
        return np.nanmedian(stack, axis=axis)


def group_synchrony(
    dancers: Sequence[PoseSeries],
    *,
    rate_hz: float = RATE_HZ,
    max_lag_s: float = MAX_LAG_S,
    window_s: float = WINDOW_S,
    moments: int = 5,
) -> GroupSync:
    """Each dancer's lag and similarity against the median joint angles of the others (leave one out, so the
    dancer being judged is not part of the yardstick), and the `moments` windows of `window_s` where the
    dancers' poses are furthest apart. Needs two or more dancers; with two, each is judged against the other."""
    if len(dancers) < 2:
        raise ValueError("group synchrony needs two or more dancers")
    grid = _on_common_grid(dancers, rate_hz)
    features = np.stack([angle_features(s)[0] for s in grid])  # (N, T, J)
    results = []
    for n, series in enumerate(grid):
        others = _nanmedian(np.delete(features, n, axis=0), axis=0)
        try:
            lag = feature_lag(others, features[n], rate_hz, max_lag_s)
        except NotEnoughPose:  # a passer-by in view for a moment: no verdict, but the others still get theirs
            lag = Lag(math.nan, math.nan)
        seconds = lag.seconds if lag.similarity >= MIN_LAG_SIMILARITY else math.nan
        results.append(DancerSync(series.track_id, seconds, lag.similarity))

    # Together-ness as a viewer sees it: the same instant, no lag removed.
    median = _nanmedian(features, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        distance = np.sqrt(np.nanmean((features - median) ** 2, axis=2))  # (N, T) RMS over joints
    in_view = (~np.isnan(distance)).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = np.where(in_view >= 2, np.nanmean(distance, axis=0), np.nan)
    times = grid[0].times
    width = max(1, round(window_s * rate_hz))
    found = []
    for start, stop in worst_windows(spread, width, moments):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            apart = np.nanmean(distance[:, start:stop], axis=1)
        furthest = grid[int(np.nanargmax(apart))].track_id if not np.isnan(apart).all() else None
        found.append(
            GroupMoment(
                float(times[start]),
                float(times[stop - 1]) + 1 / rate_hz,
                float(np.nanmean(spread[start:stop])),
                furthest,
            )
        )
    return GroupSync(results, found, times, spread)


# Compare with a reference: DTW -------------------------------------------------------------------------------


def _band_costs(x: np.ndarray, y: np.ndarray, lo: np.ndarray, width: int, block: int = 512) -> np.ndarray:
    """(n, width) mean squared keypoint distance between x[i] and y[lo[i] + q], over keypoints seen in both;
    `MISSING_COST` where none is, inf outside y. x (n, K, 2), y (m, K, 2) with NaN for unseen keypoints.

    With masks m and zero-filled coordinates, sum_k m_x m_y |x - y|^2 = m_y.|x|^2 + m_x.|y|^2 - 2 x.y:
    four matrix products per block of rows instead of a loop over cells."""
    mx, my = ~np.isnan(x[..., 0]), ~np.isnan(y[..., 0])
    xf, yf = np.nan_to_num(x).reshape(len(x), -1), np.nan_to_num(y).reshape(len(y), -1)
    x2, y2 = (np.nan_to_num(x) ** 2).sum(axis=2), (np.nan_to_num(y) ** 2).sum(axis=2)
    mxf, myf = mx.astype(np.float64), my.astype(np.float64)
    m = len(y)
    out = np.empty((len(x), width))
    for i0 in range(0, len(x), block):
        i1 = min(i0 + block, len(x))
        c0, c1 = max(0, int(lo[i0])), min(m, int(lo[i1 - 1]) + width)
        if c1 <= c0:
            out[i0:i1] = np.inf
            continue
        rows, cols = slice(i0, i1), slice(c0, c1)
        total = x2[rows] @ myf[cols].T + mxf[rows] @ y2[cols].T - 2 * xf[rows] @ yf[cols].T
        count = mxf[rows] @ myf[cols].T
        with np.errstate(invalid="ignore", divide="ignore"):
            cost = np.where(count > 0, np.maximum(total, 0) / count, MISSING_COST)
        j = lo[i0:i1, None] + np.arange(width)[None, :]
        inside = (j >= 0) & (j < m)
        picked = np.take_along_axis(cost, np.clip(j - c0, 0, c1 - c0 - 1), axis=1)
        out[i0:i1] = np.where(inside, picked, np.inf)
    return out


def _shifted(row: np.ndarray, by: int) -> np.ndarray:
    """row[q + by] at q (inf beyond either end): the previous row seen from the current row's band."""
    out = np.full_like(row, np.inf)
    if by >= 0:
        if by < len(row):
            out[: len(row) - by] = row[by:]
    elif -by < len(row):
        out[-by:] = row[: len(row) + by]
    return out


def dtw_band(x: np.ndarray, y: np.ndarray, radius: int, step_penalty: float = STEP_PENALTY) -> tuple[np.ndarray, float]:
    """Dynamic time warping of x (n, K, 2) onto y (m, K, 2) within a Sakoe-Chiba band of `radius` frames
    around the straight line from (0, 0) to (n-1, m-1). Returns (path (P, 2) of (i, j) pairs, mean cost per step).

    Steps: diagonal (i-1, j-1), or (i-1, j) and (i, j-1) at `step_penalty` extra. A row's cumulative cost
    D[i, j] = min(E[j], D[i, j-1] + c[i, j] + p), with E from the row above, is a prefix-minimum scan:
    D[i, j] = S[j] + min_{j' <= j}(E[j'] - S[j']) where S is the running sum of c + p along the row.
    So each row is a handful of vector operations: O(n * radius) work, n Python-level steps."""
    n, m = len(x), len(y)
    centre = np.round(np.arange(n) * ((m - 1) / max(n - 1, 1))).astype(np.int64)
    radius = max(radius, int(np.max(np.diff(centre), initial=0)))  # consecutive rows' bands must touch
    width = 2 * radius + 1
    lo = centre - radius
    cost = _band_costs(x, y, lo, width)
    valid = np.isfinite(cost)
    total = np.full((n, width), np.inf)
    q = np.arange(width)
    for i in range(n):
        c = cost[i]
        if i == 0:
            entry = np.where(lo[0] + q == 0, c, np.inf)
        else:
            by = int(lo[i] - lo[i - 1])
            above = total[i - 1]
            entry = c + np.minimum(_shifted(above, by - 1), _shifted(above, by) + step_penalty)
        steps = np.cumsum(np.where(valid[i], c + step_penalty, 0.0))
        with np.errstate(invalid="ignore"):
            row = steps + np.minimum.accumulate(np.where(valid[i], entry - steps, np.inf))
        total[i] = np.where(valid[i], row, np.inf)
    end = m - 1 - int(lo[-1])
    if not np.isfinite(total[-1, end]):
        raise NotEnoughPose("no warping path within the band")

    def at(i: int, j: int) -> float:
        qq = j - int(lo[i])
        return float(total[i, qq]) if 0 <= qq < width else math.inf

    path = [(n - 1, m - 1)]
    i, j = n - 1, m - 1
    while i > 0 or j > 0:
        options = (
            (at(i - 1, j - 1) if i and j else math.inf, i - 1, j - 1),
            ((at(i - 1, j) + step_penalty) if i else math.inf, i - 1, j),
            ((at(i, j - 1) + step_penalty) if j else math.inf, i, j - 1),
        )
        _, i, j = min(options, key=lambda o: o[0])
        path.append((i, j))
    return np.array(path[::-1], np.int64), float(total[-1, end]) / len(path)


@dataclass(frozen=True)
class CompareMoment:
    start: float  # reference time, seconds
    end: float
    attempt_start: float  # the attempt's matching time span
    attempt_end: float
    similarity: float  # mean over the window
    worst_keypoints: tuple[str, ...]  # the three furthest off, worst first

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "attempt_start": round(self.attempt_start, 3),
            "attempt_end": round(self.attempt_end, 3),
            "similarity": round(self.similarity, 4),
            "worst_keypoints": list(self.worst_keypoints),
        }


@dataclass(frozen=True)
class Alignment:
    """The attempt aligned onto the reference's time."""

    mirrored: bool  # whether the attempt was compared as its mirror image
    path: np.ndarray  # (P, 2) (reference frame, attempt frame) on the two grids
    times: np.ndarray  # (Tr,) the reference's grid, video seconds
    attempt_times: np.ndarray  # (Ta,) the attempt's grid, video seconds
    matched_time: np.ndarray  # (Tr,) the attempt's time doing what the reference does at `times`
    similarity: np.ndarray  # (Tr,) 0..1 per reference frame, weighted mean over keypoints; NaN where unseen
    keypoint_similarity: np.ndarray  # (Tr, K) 0..1 per keypoint: exp(-(distance / SIMILARITY_SCALE)^2)
    names: tuple[str, ...]
    score: float  # mean of `similarity`
    moments: list[CompareMoment]  # worst first
    band_s: float  # the Sakoe-Chiba band's radius
    cost: float  # mean DTW cost per path step, torso lengths squared
    keypoint_weights: np.ndarray  # (K,) each keypoint's weight in `similarity` (see `keypoint_weights`)
    other_score: float | None  # with mirror=None: the score of the orientation not chosen

    def to_dict(self) -> dict[str, Any]:
        def rounded(values: np.ndarray, digits: int) -> list[float | None]:
            return [None if math.isnan(v) else round(float(v), digits) for v in values]

        return {
            "mirrored": self.mirrored,
            "score": round(self.score, 4),
            "other_orientation_score": None if self.other_score is None else round(self.other_score, 4),
            "band_s": round(self.band_s, 3),
            "keypoint_weights": {
                name: round(float(w), 4) for name, w in zip(self.names, self.keypoint_weights, strict=True)
            },
            "worst_moments": [m.to_dict() for m in self.moments],
            "series": {
                "time": rounded(self.times, 4),
                "attempt_time": rounded(self.matched_time, 4),
                "similarity": rounded(self.similarity, 4),
                "keypoints": {name: rounded(self.keypoint_similarity[:, k], 3) for k, name in enumerate(self.names)},
            },
        }


def _match(path: np.ndarray, n: int) -> np.ndarray:
    """(n,) for each reference frame, the mean attempt frame the path pairs it with."""
    sums = np.bincount(path[:, 0], weights=path[:, 1], minlength=n)
    return sums / np.bincount(path[:, 0], minlength=n)


def _mean(values: np.ndarray, axis: int | None = None) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def keypoint_weights(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(K,) how far each keypoint travels in either dancer (the spread of its normalised position over time,
    the larger of the two, so a limb only one of them moves still counts), plus `WEIGHT_FLOOR`."""

    def spread(points: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nan_to_num(np.linalg.norm(np.nanstd(points, axis=0), axis=1))

    return np.maximum(spread(x), spread(y)) + WEIGHT_FLOOR


def weighted_similarity(keypoint_similarity: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(T,) the weighted mean over the keypoints known in each frame; NaN where none is."""
    known = ~np.isnan(keypoint_similarity)
    total = (np.where(known, keypoint_similarity, 0.0) * weights).sum(axis=1)
    weight = (known * weights).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / weight, np.nan)


@dataclass(frozen=True)
class _Run:
    path: np.ndarray
    cost: float
    matched: np.ndarray  # (n,) the mean attempt frame paired with each reference frame
    keypoint_similarity: np.ndarray  # (n, K)
    similarity: np.ndarray  # (n,)
    weights: np.ndarray  # (K,)


def _compare(x: np.ndarray, y: np.ndarray, radius: int, step_penalty: float) -> _Run:
    path, cost = dtw_band(x, y, radius, step_penalty)
    matched = _match(path, len(x))
    distance = np.linalg.norm(x - y[np.round(matched).astype(np.int64)], axis=2)
    keypoint_similarity = np.exp(-((distance / SIMILARITY_SCALE) ** 2))
    weights = keypoint_weights(x, y)
    return _Run(path, cost, matched, keypoint_similarity, weighted_similarity(keypoint_similarity, weights), weights)


def align(
    reference: PoseSeries,
    attempt: PoseSeries,
    mirror: bool | None = False,
    *,
    rate_hz: float = RATE_HZ,
    band_s: float | None = None,
    window_s: float = WINDOW_S,
    moments: int = 5,
    step_penalty: float = STEP_PENALTY,
) -> Alignment:
    """Align `attempt` onto `reference` by DTW on normalised poses and score how alike they are.

    `mirror`: True compares the attempt's mirror image (a class facing its teacher), False as it is,
    None tries both and keeps the one with the lower DTW cost. `band_s`: how far (seconds) the attempt
    may run ahead of or behind the proportional diagonal; by default the larger of `MIN_BAND_S` and
    `BAND_SHARE` of the longer series. Each series is first trimmed to the span its dancer is seen in.
    """
    ref = reference.trimmed().resample(rate_hz)
    att = attempt.trimmed().resample(rate_hz)
    if band_s is None:
        band_s = max(MIN_BAND_S, BAND_SHARE * max(len(ref), len(att)) / rate_hz)
    radius = max(1, round(band_s * rate_hz))
    x = normalised_keypoints(ref)
    orientations = [False, True] if mirror is None else [mirror]
    runs = {m: _compare(x, normalised_keypoints(att, mirror=m), radius, step_penalty) for m in orientations}
    chosen = min(orientations, key=lambda m: runs[m].cost)
    run = runs[chosen]
    matched, keypoint_similarity, similarity = run.matched, run.keypoint_similarity, run.similarity
    other = [float(_mean(runs[m].similarity)) for m in orientations if m != chosen]

    width = max(1, round(window_s * rate_hz))
    found = []
    for start, stop in worst_windows(1 - similarity, width, moments):
        per_keypoint = _mean(keypoint_similarity[start:stop], axis=0)
        order = [int(k) for k in np.argsort(np.where(np.isnan(per_keypoint), np.inf, per_keypoint))[:3]]
        found.append(
            CompareMoment(
                start=float(ref.times[start]),
                end=float(ref.times[stop - 1]) + 1 / rate_hz,
                attempt_start=float(np.interp(matched[start], np.arange(len(att)), att.times)),
                attempt_end=float(np.interp(matched[stop - 1], np.arange(len(att)), att.times)) + 1 / rate_hz,
                similarity=float(_mean(similarity[start:stop])),
                worst_keypoints=tuple(ref.names[k] for k in order),
            )
        )
    return Alignment(
        mirrored=chosen,
        path=run.path,
        times=ref.times,
        attempt_times=att.times,
        matched_time=np.interp(matched, np.arange(len(att)), att.times),
        similarity=similarity,
        keypoint_similarity=keypoint_similarity,
        names=ref.names,
        score=float(_mean(similarity)),
        moments=found,
        band_s=radius / rate_hz,
        cost=run.cost,
        keypoint_weights=run.weights,
        other_score=other[0] if other else None,
    )
