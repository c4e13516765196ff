"""What an analyzer is: a video in, every dancer's pose in every frame out."""

from __future__ import annotations

from typing import Protocol

from shared.profiles import Profile
from worker.pipeline.records import PoseSequence, ProgressFn, VideoInfo


class Analyzer(Protocol):
    def analyze(self, video: VideoInfo, profile: Profile, progress: ProgressFn) -> PoseSequence:
        """Detect, track and estimate poses: one entry per decoded frame."""
        ...
