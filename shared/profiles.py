"""The analysis profiles a job can ask for.

The one definition that the API, the job record, the settings and the worker all use.
"""

from __future__ import annotations

from enum import Enum


class Profile(str, Enum):
    """How a video is analysed: `fast` gives YOLO's 17 COCO keypoints; `accurate` BlazePose's 33 landmarks."""

    FAST = "fast"
    ACCURATE = "accurate"

    @classmethod
    def names(cls) -> list[str]:
        return [profile.value for profile in cls]
