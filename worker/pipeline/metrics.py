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

from shared.result_schemas import SCHEMA_VERSION
from shared.skeletons import ANGLE_JOINTS, SPEED_KEYPOINTS
from worker.pipeline.records import Detection, PoseSequence, VideoInfo

MIN_SCORE = 0.3


def joint_angle(a: np.ndarray, vertex: np.ndarray, b: np.ndarray) -> float:
    """Angle at `vertex` between the segments to `a` and `b`, in degrees (0..180)."""
    u, v = a - vertex, b - vertex
    norm = float(np.linalg.norm(u) * np.linalg.norm(v))
    if norm == 0:
        return math.nan
    cos = float(np.clip(np.dot(u, v) / norm, -1.0, 1.0))
    return math.degrees(math.acos(cos))


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


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def dancer_metrics(track: list[tuple[float, Detection]], names: tuple[str, ...]) -> dict[str, Any]:
    index = {name: i for i, name in enumerate(names)}
    times = [t for t, _ in track]
    angles: dict[str, list[float | None]] = {}
    for joint, (a, vertex, b) in ANGLE_JOINTS:
        if not all(n in index for n in (a, vertex, b)):
            continue
        ia, iv, ib = index[a], index[vertex], index[b]
        series: list[float | None] = []
        for _, det in track:
            kp = det.keypoints
            if min(kp[ia, 2], kp[iv, 2], kp[ib, 2]) < MIN_SCORE:
                series.append(None)
            else:
                series.append(_round(joint_angle(kp[ia, :2], kp[iv, :2], kp[ib, :2]), 2))
        angles[joint] = series

    speeds_px: dict[str, list[float | None]] = {}
    speeds_norm: dict[str, list[float | None]] = {}
    energy_terms = np.zeros(len(track))
    for name in SPEED_KEYPOINTS:
        if name not in index:
            continue
        k = index[name]
        px: list[float | None] = [None]
        norm: list[float | None] = [None]
        for i in range(1, len(track)):
            (t0, d0), (t1, d1) = track[i - 1], track[i]
            dt = t1 - t0
            if dt <= 0 or min(d0.keypoints[k, 2], d1.keypoints[k, 2]) < MIN_SCORE:
                px.append(None)
                norm.append(None)
                continue
            speed = float(np.linalg.norm(d1.keypoints[k, :2] - d0.keypoints[k, :2]) / dt)
            body = max(float(d1.box[3] - d1.box[1]), 1.0)
            px.append(_round(speed, 2))
            norm.append(_round(speed / body, 4))
            energy_terms[i] += (speed / body) ** 2
        speeds_px[name] = px
        speeds_norm[name] = norm

    frame_step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    summary = {
        "time_in_view_s": round(len(track) * frame_step, 3),
        "frames_in_view": len(track),
        "first_time": round(times[0], 6),
        "last_time": round(times[-1], 6),
        "joint_angles": {joint: _stats(series) for joint, series in angles.items()},
        "speeds": {name: _speed_summary(speeds_px[name], speeds_norm[name]) for name in speeds_px},
        "movement_energy": round(float(energy_terms[1:].mean()) if len(track) > 1 else 0.0, 5),
    }
    return {
        "summary": summary,
        "series": {"time": [round(t, 6) for t in times], "angles": angles, "speeds": speeds_px},
    }


def compute_metrics(job_id: str, video: VideoInfo, poses: PoseSequence) -> dict[str, Any]:
    tracks: dict[int, list[tuple[float, Detection]]] = {}
    for frame in poses.frames:
        for det in frame.detections:
            tracks.setdefault(det.track_id, []).append((frame.time, det))
    dancers = [
        {"track_id": track_id, **dancer_metrics(track, poses.skeleton.keypoints)}
        for track_id, track in sorted(tracks.items())
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "job_id": job_id,
        "video": {"duration": round(video.duration, 6), "fps": round(video.fps, 6), "frame_count": video.frame_count},
        "dancers": dancers,
    }
