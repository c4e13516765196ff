"""What an analyzer is: a video in, every dancer's pose in every frame out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from shared.profiles import Profile
from worker.pipeline.records import PoseSequence, ProgressFn, VideoInfo

if TYPE_CHECKING:
    from worker.pipeline.beats import Beats


class Analyzer(Protocol):
    def analyze(
        self, video: VideoInfo, profile: Profile, progress: ProgressFn, *, music: Beats | None = None
    ) -> PoseSequence:
        """Detect, track and estimate poses: one entry per decoded frame. `music` is what the listening
        stage found (the mock dancers dance to it; real dancers already do)."""
        ...
