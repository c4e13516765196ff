"""The real analysis through the lead's later stages: smooth, metrics, render, export (called directly)."""

from __future__ import annotations

import json

import av
import pytest

from shared.profiles import Profile
from shared.result_schemas import validate
from worker.pipeline import beats, export, metrics, probe, render, smooth

pytestmark = pytest.mark.pipeline


@pytest.mark.parametrize("profile", ["fast", "accurate"])
def test_rendered_video_keeps_frames_duration_and_audio_and_poses_validate(analyzer, clip, tmp_path, profile):
    path, written = clip(audio=True)
    video = probe.probe(path)
    assert video.has_audio
    seq = analyzer.analyze(video, Profile(profile), lambda done: None)
    seq = smooth.smooth_sequence(seq, video.width, video.height)
    music = beats.find_beats(path)
    summary = metrics.compute_metrics("job", video, seq, music)
    out = tmp_path / "annotated.mp4"
    render.render(video, seq, out)
    files = export.export(tmp_path, "job", video, seq, summary, music)

    rendered = probe.probe(out)
    assert rendered.frame_count == video.frame_count == len(written)
    assert abs(rendered.duration - video.duration) < 1e-3
    assert (rendered.width, rendered.height) == (video.width, video.height)
    assert rendered.has_audio
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"

    document = json.loads(next(p for name, p in files.items() if name.value == "poses.json").read_text())
    validate("poses", document)
    assert document["generator"]["mode"] == "real" and document["generator"]["smoothing"]
    assert len(document["frames"]) == video.frame_count
    assert len([t for t in document["tracks"] if t["frames_in_view"] >= video.frame_count // 2]) == 2


@pytest.mark.parametrize(
    ("name", "clip_args"),
    [
        ("nobody", {"seconds": 1, "size": (320, 240)}),
        ("tiny", {"seconds": 1, "size": (96, 64)}),
        ("one", {"times": [0.0]}),
    ],
)
def test_no_people_a_tiny_video_or_one_frame_give_valid_empty_results(analyzer, tmp_path, name, clip_args):
    from tests.synthetic import make_clip

    video = probe.probe(make_clip(tmp_path / f"{name}.mp4", **clip_args))
    music = beats.find_beats(video.path)
    assert music.skipped == "the video has no audio track"
    for profile in Profile:
        seq = smooth.smooth_sequence(analyzer.analyze(video, profile, lambda done: None), video.width, video.height)
        summary = metrics.compute_metrics("job", video, seq, music)
        render.render(video, seq, tmp_path / "annotated.mp4", preset="ultrafast")
        files = export.export(tmp_path, "job", video, seq, summary, music)
        document = json.loads(next(p for n, p in files.items() if n.value == "poses.json").read_text())
        validate("poses", document)
        validate("metrics", summary)
        assert document["tracks"] == [] and summary["dancers"] == []
        assert len(document["frames"]) == video.frame_count
        assert document["generator"]["detection"]["why"].startswith("Nobody was found")
        assert probe.probe(tmp_path / "annotated.mp4").frame_count == video.frame_count
