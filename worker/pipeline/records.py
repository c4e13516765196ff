"""The typed records every stage speaks.

`probe` produces a `VideoInfo`; an analyzer produces a `PoseSequence` (one
`FramePoses` per decoded frame); smoothing, metrics, render and export read it.
Keypoints and boxes are in pixels of the upright frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared.skeletons import Skeleton


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # upright, after rotation
    height: int
    rotation: int  # degrees clockwise the stored frames must turn to be upright
    fps: float  # average, from the container
    duration: float  # seconds
    frame_count: int
    variable_frame_rate: bool
    has_audio: bool
    codec: str
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "rotation": self.rotation,
            "fps": round(self.fps, 6),
            "duration": round(self.duration, 6),
            "frame_count": self.frame_count,
            "variable_frame_rate": self.variable_frame_rate,
            "has_audio": self.has_audio,
            "codec": self.codec,
        }


@dataclass
class Detection:
    """One person in one frame."""

    track_id: int
    box: np.ndarray  # (4,) x1, y1, x2, y2
    score: float
    keypoints: np.ndarray  # (K, 3) x, y, score; smoothed once the smooth stage ran
    keypoints_raw: np.ndarray | None = None  # (K, 3) as the model gave them; None when interpolated
    interpolated: bool = False


@dataclass
class FramePoses:
    index: int
    time: float  # seconds, from the container's timestamp
    detections: list[Detection] = field(default_factory=list)


@dataclass
class PoseSequence:
    skeleton: Skeleton
    frames: list[FramePoses]
    # Who produced it: mode, profile, detector, pose_model, tracker, smoothing, device.
    generator: dict[str, str | None]

    def track_ids(self) -> list[int]:
        return sorted({d.track_id for frame in self.frames for d in frame.detections})


class ProgressFn(Protocol):
    def __call__(self, frames_done: int) -> None:
        """Report frames finished in the current stage; may raise JobCanceled."""
