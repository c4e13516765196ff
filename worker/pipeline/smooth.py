"""Smooth stage: per track and per keypoint, remove jitter without lag and fill short gaps.

1. Gaps: when a track misses 1..`max_gap_frames` frames between two detections,
   those frames get a detection interpolated linearly in time (box, keypoints,
   scores; VFR-aware), marked `interpolated=True` with `keypoints_raw=None`.
   Longer gaps stay gaps.
2. Jitter: a One Euro filter (Casiez et al., CHI 2012) on every keypoint's
   (x, y), run forwards and backwards over each continuous run of the track
   and averaged. One Euro adapts its cutoff to speed (steady limbs are held
   still, fast ones pass through); the forward pass lags and the backward
   pass leads by the same amount, so their mean has no lag, which an offline
   stage can afford. Positions are measured in body heights (the track's
   median box height), so the same parameters fit any resolution and dancer
   size; time steps come from the container's timestamps, so VFR is exact.

The model's values stay in `keypoints_raw`; the stage is idempotent (it always
starts from the raw values and drops its own earlier interpolations). Mock
sequences (continuous tracks) go through the same code.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from worker.pipeline.records import Detection, PoseSequence


@dataclass(frozen=True)
class SmoothingConfig:
    min_cutoff_hz: float = 1.0
    beta: float = 6.0  # cutoff Hz added per body-height/s of speed
    d_cutoff_hz: float = 1.0
    max_gap_frames: int = 5

    def describe(self) -> str:
        return (
            f"one-euro forward-backward (min_cutoff={self.min_cutoff_hz:g}Hz, beta={self.beta:g}, "
            f"d_cutoff={self.d_cutoff_hz:g}Hz); gaps<={self.max_gap_frames} frames interpolated"
        )


DEFAULT = SmoothingConfig()


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro(times: np.ndarray, values: np.ndarray, config: SmoothingConfig = DEFAULT) -> np.ndarray:
    """One Euro filter along axis 0 of `values` (T, K, 2); the K points are filtered independently."""
    out = np.empty_like(values)
    out[0] = values[0]
    x_hat = values[0].copy()
    dx_hat = np.zeros_like(values[0])
    for i in range(1, len(values)):
        dt = max(float(times[i] - times[i - 1]), 1e-3)
        dx = (values[i] - x_hat) / dt
        dx_hat += _alpha(config.d_cutoff_hz, dt) * (dx - dx_hat)
        speed = np.linalg.norm(dx_hat, axis=-1, keepdims=True)
        x_hat += _alpha(config.min_cutoff_hz + config.beta * speed, dt) * (values[i] - x_hat)
        out[i] = x_hat
    return out


def zero_lag_one_euro(times: np.ndarray, values: np.ndarray, config: SmoothingConfig = DEFAULT) -> np.ndarray:
    """Mean of the forward and the time-reversed One Euro passes: jitter removed, lag cancelled."""
    if len(values) < 3:
        return values.copy()
    forward = one_euro(times, values, config)
    backward = one_euro(-times[::-1], values[::-1], config)[::-1]
    return (forward + backward) / 2.0


def _interpolate(a: Detection, b: Detection, w: float, track_id: int) -> Detection:
    kp_a = a.keypoints_raw if a.keypoints_raw is not None else a.keypoints
    kp_b = b.keypoints_raw if b.keypoints_raw is not None else b.keypoints
    return Detection(
        track_id=track_id,
        box=((1 - w) * a.box + w * b.box).astype(np.float32),
        score=float((1 - w) * a.score + w * b.score),
        keypoints=((1 - w) * kp_a + w * kp_b).astype(np.float32),
        keypoints_raw=None,
        interpolated=True,
    )


def smooth_sequence(poses: PoseSequence, config: SmoothingConfig = DEFAULT) -> PoseSequence:
    frames = poses.frames
    times = np.array([f.time for f in frames], dtype=np.float64)
    # Start from the model's values; forget interpolations of an earlier run.
    tracks: dict[int, list[tuple[int, Detection]]] = {}
    for pos, frame in enumerate(frames):
        frame.detections = [d for d in frame.detections if not d.interpolated]
        for det in frame.detections:
            if det.keypoints_raw is None:
                det.keypoints_raw = np.array(det.keypoints, dtype=np.float32, copy=True)
            tracks.setdefault(det.track_id, []).append((pos, det))

    for track_id, items in tracks.items():
        items.sort(key=lambda item: item[0])
        # 1. fill short gaps, split at long ones
        runs: list[list[tuple[int, Detection]]] = [[items[0]]]
        for (pos_a, det_a), (pos_b, det_b) in itertools.pairwise(items):
            gap = pos_b - pos_a - 1
            if gap > config.max_gap_frames:
                runs.append([(pos_b, det_b)])
                continue
            span = max(times[pos_b] - times[pos_a], 1e-9)
            for pos in range(pos_a + 1, pos_b):
                filled = _interpolate(det_a, det_b, float((times[pos] - times[pos_a]) / span), track_id)
                frames[pos].detections.append(filled)
                runs[-1].append((pos, filled))
            runs[-1].append((pos_b, det_b))
        # 2. zero-lag One Euro per run, in body heights
        heights = np.array([float(d.box[3] - d.box[1]) for _, d in items])
        scale = max(float(np.median(heights)), 1.0)
        for run in runs:
            run_times = times[[pos for pos, _ in run]]
            raw = np.stack([(d.keypoints_raw if d.keypoints_raw is not None else d.keypoints) for _, d in run]).astype(
                np.float64
            )
            smoothed_xy = zero_lag_one_euro(run_times, raw[..., :2] / scale, config) * scale
            for (_, det), xy, values in zip(run, smoothed_xy, raw, strict=True):
                det.keypoints = np.concatenate([xy, values[:, 2:3]], axis=1).astype(np.float32)

    for frame in frames:
        frame.detections.sort(key=lambda d: d.track_id)
    poses.generator["smoothing"] = config.describe()
    return poses
