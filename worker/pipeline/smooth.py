"""Smooth stage (placeholder until the temporal filter lands): keeps the raw
keypoints as they are and records them as `keypoints_raw`."""

from __future__ import annotations

from worker.pipeline.records import PoseSequence


def smooth_sequence(poses: PoseSequence) -> PoseSequence:
    for frame in poses.frames:
        for det in frame.detections:
            if det.keypoints_raw is None and not det.interpolated:
                det.keypoints_raw = det.keypoints.copy()
    poses.generator["smoothing"] = None
    return poses
