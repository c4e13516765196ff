from pathlib import Path

import pytest

from shared.errors import ErrorCode, ServiceError
from tests.synthetic import make_clip, truncated_copy
from worker.pipeline.decode import decode_frames, frame_times
from worker.pipeline.probe import probe


def test_probe_reads_the_container(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", seconds=2, fps=15, size=(320, 240), audio=True)
    info = probe(clip)
    assert (info.width, info.height, info.rotation) == (320, 240, 0)
    assert info.frame_count == 30
    assert info.duration == pytest.approx(2.0, abs=1e-3)
    assert info.fps == pytest.approx(15.0, abs=1e-3)
    assert info.has_audio and info.codec == "h264" and not info.variable_frame_rate


def test_rotated_clip_comes_out_upright(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "portrait.mp4", seconds=1, fps=10, size=(240, 320), rotation=90)
    info = probe(clip)
    assert (info.width, info.height) == (240, 320)
    assert info.rotation == 90
    first = next(decode_frames(clip, info.rotation)).image
    assert first.shape[:2] == (320, 240)
    # The red marker stays in the top-left corner once the rotation is applied.
    assert first[5, 5, 2] > 200 and first[5, 5, 0] < 60


def test_variable_frame_rate_keeps_container_times(tmp_path: Path) -> None:
    times = [0.0, 0.1, 0.3, 0.4, 0.6, 0.7, 0.9, 1.0]
    clip = make_clip(tmp_path / "vfr.mp4", fps=10, times=times)
    info = probe(clip)
    assert info.variable_frame_rate
    assert frame_times(clip) == pytest.approx(times, abs=1e-3)
    assert [f.time for f in decode_frames(clip, 0)] == pytest.approx(times, abs=1e-3)


@pytest.mark.parametrize(
    "content",
    [b"", b"just some text, named like a video\n" * 20, b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100],
    ids=["empty", "text", "header-only"],
)
def test_not_a_video_is_invalid_and_its_details_hold_no_server_path(tmp_path: Path, content: bytes) -> None:
    scratch = tmp_path / "job-0123456789abcdef-scratch"
    scratch.mkdir()
    path = scratch / "source.mp4"
    path.write_bytes(content)
    with pytest.raises(ServiceError) as caught:
        probe(path)
    error = caught.value
    assert error.code is ErrorCode.INVALID_VIDEO
    assert "video" in error.message
    shown = repr(error.to_dict())
    assert str(scratch) not in shown and str(tmp_path) not in shown
    assert "0123456789abcdef" not in shown
    # FFmpeg's own words stay, with the bare file name.
    assert "source.mp4" in error.details["reason"]


@pytest.mark.parametrize("keep", [0.3, 0.5, 0.9])
def test_truncated_mp4_is_invalid(tmp_path: Path, keep: float) -> None:
    clip = make_clip(tmp_path / "clip.mp4", seconds=2)
    cut = truncated_copy(clip, tmp_path / "cut.mp4", keep=keep)
    with pytest.raises(ServiceError) as caught:
        probe(cut)
    assert caught.value.code is ErrorCode.INVALID_VIDEO


def test_too_long_is_refused(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", seconds=2)
    with pytest.raises(ServiceError) as caught:
        probe(clip, max_seconds=1)
    assert caught.value.code is ErrorCode.VIDEO_TOO_LONG
