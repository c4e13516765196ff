"""Export stage: poses.json, poses.csv and metrics.json into a local folder.

poses.json follows shared/schemas/poses.schema.json; poses.csv is the same
data in long format (one row per frame, track and keypoint) for spreadsheets
and pandas.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from shared.keys import ResultName
from shared.result_schemas import SCHEMA_VERSION
from worker.pipeline.records import Detection, PoseSequence, VideoInfo

CSV_COLUMNS = ("frame", "time", "track", "keypoint", "x", "y", "score")


def _points(array: np.ndarray) -> list[list[float]]:
    return [[round(float(x), 2), round(float(y), 2), round(float(s), 4)] for x, y, s in array]


def _detection(frame: int, time: float, det: Detection) -> dict[str, Any]:
    return {
        "frame": frame,
        "time": round(time, 6),
        "box": [round(float(v), 2) for v in det.box],
        "score": round(float(min(max(det.score, 0.0), 1.0)), 4),
        "keypoints": _points(det.keypoints),
        "keypoints_raw": None if det.keypoints_raw is None else _points(det.keypoints_raw),
        "interpolated": det.interpolated,
    }


def poses_document(job_id: str, video: VideoInfo, poses: PoseSequence) -> dict[str, Any]:
    tracks: dict[int, list[dict[str, Any]]] = {}
    for frame in poses.frames:
        for det in frame.detections:
            tracks.setdefault(det.track_id, []).append(_detection(frame.index, frame.time, det))
    return {
        "schema_version": SCHEMA_VERSION,
        "job_id": job_id,
        "generator": poses.generator,
        "video": video.to_dict(),
        "skeleton": poses.skeleton.to_dict(),
        "frames": [{"index": frame.index, "time": round(frame.time, 6)} for frame in poses.frames],
        "tracks": [
            {
                "track_id": track_id,
                "frames_in_view": len(detections),
                "first_time": detections[0]["time"],
                "last_time": detections[-1]["time"],
                "detections": detections,
            }
            for track_id, detections in sorted(tracks.items())
        ],
    }


def write_csv(path: Path, poses: PoseSequence) -> None:
    names = poses.skeleton.keypoints
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for frame in poses.frames:
            time = f"{frame.time:.6f}"
            for det in frame.detections:
                for name, (x, y, score) in zip(names, det.keypoints, strict=True):
                    writer.writerow((frame.index, time, det.track_id, name, f"{x:.2f}", f"{y:.2f}", f"{score:.4f}"))


def export(
    out_dir: Path, job_id: str, video: VideoInfo, poses: PoseSequence, metrics: dict[str, Any]
) -> dict[ResultName, Path]:
    """Write the three data files; returns their paths by result name."""
    paths = {
        ResultName.POSES_JSON: out_dir / ResultName.POSES_JSON.value,
        ResultName.POSES_CSV: out_dir / ResultName.POSES_CSV.value,
        ResultName.METRICS_JSON: out_dir / ResultName.METRICS_JSON.value,
    }
    with paths[ResultName.POSES_JSON].open("w") as handle:
        json.dump(poses_document(job_id, video, poses), handle, separators=(",", ":"))
    write_csv(paths[ResultName.POSES_CSV], poses)
    with paths[ResultName.METRICS_JSON].open("w") as handle:
        json.dump(metrics, handle, indent=1)
    return paths
