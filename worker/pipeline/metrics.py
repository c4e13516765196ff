"""Metrics stage: per dancer, joint angles over time, wrist and ankle speeds,
movement energy, time in view, and a summary.

Works on any skeleton that names the joints in `shared.skeletons.ANGLE_JOINTS`
(COCO-17 and BlazePose-33 both do). Values whose keypoints the model was not
sure of are null rather than guessed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from shared.result_schemas import METRICS_VERSION
from shared.skeletons import ANGLE_JOINTS, SPEED_KEYPOINTS
from worker.pipeline.records import Detections, PoseSequence, VideoInfo

MIN_SCORE = 0.3


def joint_angles(a: np.ndarray, vertex: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle at `vertex` between the segments to `a` and `b`, degrees 0..180, for (T, 2) arrays; NaN if degenerate."""
    u, v = a - vertex, b - vertex
    norm = np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.clip(np.sum(u * v, axis=-1) / norm, -1.0, 1.0)
    return np.degrees(np.arccos(np.where(norm > 0, cos, np.nan)))


def _stats(values: list[float | None]) -> dict[str, float | None]:
    known = np.array([v for v in values if v is not None], dtype=float)
    if known.size == 0:
        return {"mean": None, "min": None, "max": None, "std": None}
    return {
        "mean": round(float(known.mean()), 3),
        "min": round(float(known.min()), 3),
        "max": round(float(known.max()), 3),
        "std": round(float(known.std()), 3),
    }


def _speed_summary(px: list[float | None], norm: list[float | None]) -> dict[str, float | None]:
    stats = _stats(px)
    return {"mean_px_s": stats["mean"], "max_px_s": stats["max"], "mean_body_heights_s": _stats(norm)["mean"]}


def _series(values: np.ndarray, known: np.ndarray, digits: int) -> list[float | None]:
    """JSON-ready: rounded values, null where not `known` (or not a number)."""
    return [round(float(v), digits) if k and math.isfinite(v) else None for v, k in zip(values, known, strict=True)]


def dancer_metrics(times: np.ndarray, track: Detections, names: tuple[str, ...]) -> dict[str, Any]:
    """One dancer's metrics from their track (rows in frame order) and those frames' times."""
    index = {name: i for i, name in enumerate(names)}
    kp = track.keypoints
    sure = kp[..., 2] >= MIN_SCORE  # (T, K)
    angles: dict[str, list[float | None]] = {}
    for joint, (a, vertex, b) in ANGLE_JOINTS:
        if not all(n in index for n in (a, vertex, b)):
            continue
        ia, iv, ib = index[a], index[vertex], index[b]
        values = joint_angles(kp[:, ia, :2], kp[:, iv, :2], kp[:, ib, :2])
        angles[joint] = _series(values, sure[:, ia] & sure[:, iv] & sure[:, ib], 2)

    speeds_px: dict[str, list[float | None]] = {}
    speeds_norm: dict[str, list[float | None]] = {}
    energy_terms = np.zeros(len(track))
    dt = np.diff(times)
    body = np.maximum(track.heights[1:], 1.0)
    for name in SPEED_KEYPOINTS:
        if name not in index:
            continue
        k = index[name]
        valid = (dt > 0) & sure[1:, k] & sure[:-1, k]
        with np.errstate(invalid="ignore", divide="ignore"):
            speed = np.linalg.norm(np.diff(kp[:, k, :2], axis=0), axis=1) / dt
        speeds_px[name] = [None, *_series(speed, valid, 2)]
        speeds_norm[name] = [None, *_series(speed / body, valid, 4)]
        energy_terms[1:] += np.where(valid, (speed / body) ** 2, 0.0)

    frame_step = float(np.median(dt)) if len(times) > 1 else 0.0
    summary = {
        "time_in_view_s": round(len(track) * frame_step, 3),
        "frames_in_view": len(track),
        "first_time": round(float(times[0]), 6),
        "last_time": round(float(times[-1]), 6),
        "joint_angles": {joint: _stats(series) for joint, series in angles.items()},
        "speeds": {name: _speed_summary(speeds_px[name], speeds_norm[name]) for name in speeds_px},
        "movement_energy": round(float(energy_terms[1:].mean()) if len(track) > 1 else 0.0, 5),
    }
    return {
        "summary": summary,
        "series": {"time": [round(float(t), 6) for t in times], "angles": angles, "speeds": speeds_px},
    }


def compute_metrics(job_id: str, video: VideoInfo, poses: PoseSequence) -> dict[str, Any]:
    dancers = [
        {"track_id": track_id, **dancer_metrics(poses.times[track.frames], track, poses.skeleton.keypoints)}
        for track_id, track in poses.tracks()
    ]
    return {
        "schema_version": METRICS_VERSION,
        "job_id": job_id,
        "video": {"duration": round(video.duration, 6), "fps": round(video.fps, 6), "frame_count": video.frame_count},
        "dancers": dancers,
    }
