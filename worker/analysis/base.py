"""What an analyzer is, and the one place that picks mock or real."""

from __future__ import annotations

from typing import Literal, Protocol

from shared.settings import Settings
from worker.pipeline.records import PoseSequence, ProgressFn, VideoInfo

Profile = Literal["fast", "accurate"]


class Analyzer(Protocol):
    def analyze(self, video: VideoInfo, profile: Profile, progress: ProgressFn) -> PoseSequence:
        """Detect, track and estimate poses: one FramePoses per decoded frame."""
        ...


def load_analyzer(settings: Settings) -> Analyzer:
    """Called once per worker process: real models load here, not per job.

    The import of the real analyzer stays inside this function so that mock
    mode never imports torch, ultralytics or mediapipe.
    """
    if settings.use_mock_analysis:
        from worker.analysis.mock import MockAnalyzer

        return MockAnalyzer()
    from worker.analysis.real import RealAnalyzer

    return RealAnalyzer(settings)
