"""Export stage: poses.json, poses.csv, metrics.json and beats.json into a local folder.

poses.json follows shared/schemas/poses.schema.json; poses.csv is the same
data in long format (one row per frame, track and keypoint) for spreadsheets
and pandas.
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from shared.keys import ResultName
from shared.result_schemas import POSES_VERSION
from worker.pipeline.beats import Beats
from worker.pipeline.records import Detections, PoseSequence, VideoInfo

CSV_COLUMNS = ("frame", "time", "track", "keypoint", "x", "y", "score")


def _points(array: np.ndarray) -> list[list[float]]:
    return [[round(float(x), 2), round(float(y), 2), round(float(s), 4)] for x, y, s in array]


def _detections(times: np.ndarray, track: Detections) -> Iterator[dict[str, Any]]:
    for i in range(len(track)):
        frame = int(track.frames[i])
        yield {
            "frame": frame,
            "time": round(float(times[frame]), 6),
            "box": [round(float(v), 2) for v in track.boxes[i]],
            "score": round(float(min(max(track.scores[i], 0.0), 1.0)), 4),
            "keypoints": _points(track.keypoints[i]),
            "keypoints_raw": None if track.interpolated[i] else _points(track.keypoints_raw[i]),
            "interpolated": bool(track.interpolated[i]),
        }


def write_poses_json(path: Path, job_id: str, video: VideoInfo, poses: PoseSequence) -> None:
    """poses.json, written track by track and detection by detection: memory stays flat for long videos."""
    head = {
        "schema_version": POSES_VERSION,
        "job_id": job_id,
        "generator": poses.generator,
        "video": video.to_dict(),
        "skeleton": poses.skeleton.to_dict(),
        "frames": [{"index": i, "time": round(float(t), 6)} for i, t in enumerate(poses.times)],
    }
    dump = functools.partial(json.dumps, separators=(",", ":"))
    with path.open("w") as handle:
        handle.write(dump(head)[:-1] + ',"tracks":[')
        for n, (track_id, track) in enumerate(poses.tracks()):
            times = poses.times[track.frames]
            summary = {
                "track_id": track_id,
                "frames_in_view": len(track),
                "first_time": round(float(times[0]), 6),
                "last_time": round(float(times[-1]), 6),
            }
            handle.write(("," if n else "") + dump(summary)[:-1] + ',"detections":[')
            for m, detection in enumerate(_detections(poses.times, track)):
                handle.write(("," if m else "") + dump(detection))
            handle.write("]}")
        handle.write("]}")


def write_csv(path: Path, poses: PoseSequence) -> None:
    names = poses.skeleton.keypoints
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for index, people in enumerate(poses.frames()):
            time = f"{poses.times[index]:.6f}"
            for track_id, keypoints in zip(people.track_ids, people.keypoints, strict=True):
                for name, (x, y, score) in zip(names, keypoints, strict=True):
                    writer.writerow((index, time, int(track_id), name, f"{x:.2f}", f"{y:.2f}", f"{score:.4f}"))


def write_json(path: Path, document: dict[str, Any]) -> None:
    with path.open("w") as handle:
        json.dump(document, handle, indent=1)


def export(
    out_dir: Path,
    job_id: str,
    video: VideoInfo,
    poses: PoseSequence,
    metrics: dict[str, Any],
    music: Beats,
) -> dict[ResultName, Path]:
    """Write the data files; returns their paths by result name."""
    paths = {
        name: out_dir / name.value
        for name in (ResultName.POSES_JSON, ResultName.POSES_CSV, ResultName.METRICS_JSON, ResultName.BEATS_JSON)
    }
    write_poses_json(paths[ResultName.POSES_JSON], job_id, video, poses)
    write_csv(paths[ResultName.POSES_CSV], poses)
    write_json(paths[ResultName.METRICS_JSON], metrics)
    write_json(paths[ResultName.BEATS_JSON], music.to_dict(job_id))
    return paths
