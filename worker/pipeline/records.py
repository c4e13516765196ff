"""The typed records every stage speaks.

`probe` gives a `VideoInfo`. Everything about people is one record,
`Detections`: arrays with one row per person, in the manner of supervision's
struct-of-arrays `Detections`. The same record holds one frame's people (what
the detector, the tracker and the pose stage hand on), one dancer's track,
or a whole video's. An analyzer returns a `PoseSequence`: the time of every
decoded frame and one `Detections` of everyone in every frame, sorted by track
then frame, so each track is a contiguous slice (`tracks()` yields array
views that smoothing and metrics work on) and each frame is a cheap lookup
(`frames()`, for render and export).

Keypoints and boxes are in pixels of the upright frame.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared.skeletons import Skeleton


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # upright, after rotation
    height: int
    rotation: int  # degrees counter-clockwise the stored frames must turn to be upright (as ffmpeg applies it)
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
class Detections:
    """People as arrays, one row each. Indexing (`dets[mask]`, `dets[2:5]`) applies to every array."""

    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2
    scores: np.ndarray  # (N,) float32, the detector's confidence
    keypoints: np.ndarray  # (N, K, 3) float32 x, y, score; smoothed once the smooth stage ran
    keypoints_raw: np.ndarray  # (N, K, 3) float32 the pose model's own values; NaN rows where interpolated
    track_ids: np.ndarray  # (N,) int32; 0 until the tracker gives the person an id (ids start at 1)
    frames: np.ndarray  # (N,) int32 index of the frame each row belongs to
    interpolated: np.ndarray  # (N,) bool: filled in by the smooth stage over a short gap, not seen by a model

    @classmethod
    def create(
        cls,
        boxes: np.ndarray,
        scores: np.ndarray,
        keypoints: np.ndarray,
        *,
        track_ids: np.ndarray | Sequence[int] | None = None,
        frame: int = 0,
    ) -> Detections:
        """Rows fresh from a model: raw keypoints are the keypoints, nothing interpolated."""
        n = len(scores)
        keypoints = np.asarray(keypoints, np.float32)
        if keypoints.shape[::2] != (n, 3):
            raise ValueError(f"keypoints must be (N={n}, K, 3), not {keypoints.shape}")
        return cls(
            boxes=np.asarray(boxes, np.float32).reshape(n, 4),
            scores=np.asarray(scores, np.float32).reshape(n),
            keypoints=keypoints,
            keypoints_raw=keypoints.copy(),
            track_ids=np.zeros(n, np.int32) if track_ids is None else np.asarray(track_ids, np.int32).reshape(n),
            frames=np.full(n, frame, np.int32),
            interpolated=np.zeros(n, bool),
        )

    @classmethod
    def empty(cls, num_keypoints: int) -> Detections:
        return cls.create(np.zeros((0, 4)), np.zeros(0), np.zeros((0, num_keypoints, 3)))

    @classmethod
    def concat(cls, parts: Sequence[Detections], num_keypoints: int) -> Detections:
        if not parts:
            return cls.empty(num_keypoints)
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index: Any) -> Detections:
        return Detections(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @property
    def num_keypoints(self) -> int:
        return int(self.keypoints.shape[1])

    @property
    def heights(self) -> np.ndarray:
        return self.boxes[:, 3] - self.boxes[:, 1]

    def in_frame(self, frame: int) -> Detections:
        """The same rows, stamped with the index of the frame they were found in."""
        out = self[:]
        out.frames = np.full(len(self), frame, np.int32)
        return out

    def with_keypoints(self, keypoints: np.ndarray) -> Detections:
        """The same people with keypoints from another model (the pose stage); these become the raw values."""
        out = self[:]
        out.keypoints = np.asarray(keypoints, np.float32)
        out.keypoints_raw = out.keypoints.copy()
        return out


@dataclass
class PoseSequence:
    """Every dancer's pose in every decoded frame of one video."""

    skeleton: Skeleton
    times: np.ndarray  # (F,) float64 seconds of every decoded frame, from the container's timestamps
    people: Detections  # every row of every frame, sorted by (track id, frame)
    # Who produced it: mode, profile, detector, detection, pose_model, tracker, smoothing, device.
    generator: dict[str, Any]

    @classmethod
    def from_frames(
        cls, skeleton: Skeleton, times: Sequence[float], frames: Sequence[Detections], generator: dict[str, Any]
    ) -> PoseSequence:
        """From one `Detections` per frame (each stamped with its frame index, see `Detections.in_frame`)."""
        people = Detections.concat(list(frames), len(skeleton.keypoints))
        return cls(skeleton, np.asarray(times, np.float64), people, generator).sort()

    def sort(self) -> PoseSequence:
        """Put the rows in (track id, frame) order, the order `tracks()` relies on (in place; returns self)."""
        order = np.lexsort((self.people.frames, self.people.track_ids))
        self.people = self.people[order]
        return self

    @property
    def frame_count(self) -> int:
        return len(self.times)

    def track_ids(self) -> list[int]:
        return [int(i) for i in np.unique(self.people.track_ids)]

    def tracks(self) -> Iterator[tuple[int, Detections]]:
        """(track id, that track's rows in frame order) for every track; the rows are views into `people`."""
        ids = self.people.track_ids
        starts = np.r_[0, np.flatnonzero(np.diff(ids)) + 1, len(ids)]
        for start, stop in itertools.pairwise(starts):
            if stop > start:
                yield int(ids[start]), self.people[start:stop]

    def frames(self) -> Iterator[Detections]:
        """Each decoded frame's people, in track id order; one item per frame, empty where nobody is."""
        order = np.lexsort((self.people.track_ids, self.people.frames))
        starts = np.searchsorted(self.people.frames[order], np.arange(self.frame_count + 1))
        for start, stop in itertools.pairwise(starts):
            yield self.people[order[start:stop]]


class ProgressFn(Protocol):
    def __call__(self, frames_done: int) -> None:
        """Report frames finished in the current stage; may raise JobCanceled."""
