"""Probe refuses frames over the pixel limit, and its errors carry no server paths.

The limit is set low here so a small real clip proves the check; a real 8K
clip is too slow to encode on every test run.
"""

from pathlib import Path

import pytest

from shared.errors import ErrorCode, ServiceError
from shared.settings import Settings
from tests.synthetic import make_clip
from worker.pipeline.probe import check_frame_size, probe


def test_frame_over_the_pixel_limit_is_refused(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", seconds=1, size=(320, 240))
    with pytest.raises(ServiceError) as caught:
        probe(clip, max_pixels=320 * 240 - 1)
    error = caught.value
    assert error.code is ErrorCode.VIDEO_TOO_LARGE and error.http_status == 422
    assert error.details == {"width": 320, "height": 240, "max_pixels": 320 * 240 - 1}
    assert "320x240" in error.message and "Export it" in error.message


def test_frame_at_the_limit_passes(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", seconds=1, size=(320, 240))
    assert probe(clip, max_pixels=320 * 240).width == 320


def test_rotated_frame_counts_the_same_pixels(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "portrait.mp4", seconds=1, size=(240, 320), rotation=90)
    with pytest.raises(ServiceError) as caught:
        probe(clip, max_pixels=100 * 100)
    assert caught.value.code is ErrorCode.VIDEO_TOO_LARGE


def test_default_limit_advises_4k() -> None:
    limit = Settings().max_video_pixels
    check_frame_size(3840, 2160, limit)
    check_frame_size(2160, 3840, limit)
    with pytest.raises(ServiceError) as caught:
        check_frame_size(7680, 4320, limit)
    assert "7680x4320" in caught.value.message and "4K or lower" in caught.value.message
