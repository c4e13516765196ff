"""Analyzers turn a video into a PoseSequence: mock (synthetic dancers) or real (models).

`load_analyzer` is the one place that picks which: it lives here, above both,
so `base` (the protocol) imports neither and no import cycle runs through it.
"""

from __future__ import annotations

from shared.settings import Settings
from worker.analysis.base import Analyzer


def load_analyzer(settings: Settings) -> Analyzer:
    """Called once per worker process: real models load here, not per job.

    The import of the real analyzer stays inside this function so that mock
    mode never imports onnxruntime, torch or LiteRT.
    """
    if settings.use_mock_analysis:
        from worker.analysis.mock import MockAnalyzer

        return MockAnalyzer()
    from worker.analysis.real import RealAnalyzer

    return RealAnalyzer(settings)
