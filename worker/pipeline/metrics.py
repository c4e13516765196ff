"""Metrics stage: per dancer, joint angles over time, wrist and ankle speeds,
movement energy, time in view and a summary; how each dancer's accents fall on
the music's beats (worker/pipeline/timing.py); and how together the group is
(worker/pipeline/align.py's group synchrony).

Works on any skeleton that names the joints in `shared.skeletons.ANGLE_JOINTS`
(COCO-17 and BlazePose-33 both do). Values whose keypoints the model was not
sure of are null rather than guessed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.result_schemas import METRICS_VERSION
from shared.skeletons import ANGLE_JOINTS, SPEED_KEYPOINTS
from worker.pipeline.align import MIN_SHARED_S, PoseSeries, group_synchrony
from worker.pipeline.angles import MIN_SCORE, joint_angles
from worker.pipeline.records import Detections, PoseSequence, VideoInfo
from worker.pipeline.timing import dancer_timing

if TYPE_CHECKING:
    from worker.pipeline.beats import Beats


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


def music_summary(music: Beats | None) -> dict[str, Any]:
    """metrics.json's `music`: the tempo and why there are no beats, if there are none (beats.json has the times)."""
    if music is None:
        return {"tempo_bpm": None, "beat_count": 0, "skipped": "the beats were not looked for"}
    tempo = None if music.tempo_bpm is None else round(float(music.tempo_bpm), 2)
    return {"tempo_bpm": tempo, "beat_count": len(music.times), "skipped": music.skipped}


def synchrony(poses: PoseSequence, fps: float, min_seconds: float = MIN_SHARED_S) -> dict[str, Any]:
    """metrics.json's `synchrony`: each dancer against the group, and when the group is least together.

    Only dancers in view for `min_seconds` or more (frames at the video's `fps`) take part: a
    passer-by seen for a moment is not part of the group and would only blur its median."""
    dancers = [
        PoseSeries.from_sequence(poses, track_id)
        for track_id, track in poses.tracks()
        if fps > 0 and len(track) / fps >= min_seconds
    ]
    if len(dancers) < 2:
        reason = "only one dancer" if len(dancers) == 1 else "no dancer"
        return {"skipped": f"{reason} in view for {min_seconds:g} s or more", "dancers": [], "least_together": [],
                "series": None}  # fmt: skip
    return {"skipped": None, **group_synchrony(dancers).to_dict()}


def compute_metrics(job_id: str, video: VideoInfo, poses: PoseSequence, music: Beats | None = None) -> dict[str, Any]:
    dancers = []
    for track_id, track in poses.tracks():
        times = poses.times[track.frames]
        on_beat = dancer_timing(times, track, music) if music is not None and music.found else None
        dancers.append(
            {"track_id": track_id, **dancer_metrics(times, track, poses.skeleton.keypoints), "on_beat": on_beat}
        )
    return {
        "schema_version": METRICS_VERSION,
        "job_id": job_id,
        "video": {"duration": round(video.duration, 6), "fps": round(video.fps, 6), "frame_count": video.frame_count},
        "music": music_summary(music),
        "synchrony": synchrony(poses, video.fps),
        "dancers": dancers,
    }
