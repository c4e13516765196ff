"""The mock analysis through every later stage, as the worker runs them, without services."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest

from shared.keys import ResultName
from shared.profiles import Profile
from shared.result_schemas import validate
from tests.synthetic import make_clip
from worker.analysis.mock import MockAnalyzer
from worker.pipeline import beats, export, metrics, probe, render, smooth


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("mock") / "clip.mp4", seconds=3, fps=20, size=(480, 360), audio=True)


@pytest.fixture(scope="module")
def outputs(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("out")
    video = probe.probe(clip)
    seen: list[int] = []
    poses = smooth.smooth_sequence(MockAnalyzer().analyze(video, Profile.FAST, seen.append), video.width, video.height)
    music = beats.find_beats(clip)
    summary = metrics.compute_metrics("job1", video, poses, music)
    annotated = out / ResultName.ANNOTATED_VIDEO.value
    render.render(video, poses, annotated, preset="ultrafast")
    files = export.export(out, "job1", video, poses, summary, music)
    return {"video": video, "poses": poses, "files": files, "annotated": annotated, "progress": seen}


def test_one_entry_per_real_frame_with_container_times(outputs: dict, clip: Path) -> None:
    poses = outputs["poses"]
    assert poses.frame_count == 60
    assert list(poses.times) == pytest.approx([i / 20 for i in range(60)], abs=1e-3)
    assert outputs["progress"][-1] == 60


def test_one_to_three_dancers_with_stable_ids(outputs: dict) -> None:
    poses = outputs["poses"]
    ids = poses.track_ids()
    assert 1 <= len(ids) <= 3
    frames = list(poses.frames())
    assert len(frames) == 60
    for people in frames:
        assert list(people.track_ids) == ids


def test_skeletons_move_like_bodies(outputs: dict) -> None:
    poses, video = outputs["poses"], outputs["video"]
    first = next(poses.frames())
    kp = first.keypoints[0]
    # Head above shoulders above hips above ankles, inside the frame.
    nose, l_sh, l_hip, l_ankle = kp[0, 1], kp[5, 1], kp[11, 1], kp[15, 1]
    assert nose < l_sh < l_hip < l_ankle
    assert (kp[:, 0] >= 0).all() and (kp[:, 0] < video.width).all()
    assert (kp[:, 1] >= 0).all() and (kp[:, 1] < video.height).all()
    # Keypoints inside their box, and the wrists really move over the clip.
    x1, y1, x2, y2 = first.boxes[0]
    assert ((kp[:, 0] >= x1) & (kp[:, 0] <= x2) & (kp[:, 1] >= y1) & (kp[:, 1] <= y2)).all()
    wrists = np.array([people.keypoints[0, 9, :2] for people in poses.frames()])
    assert np.ptp(wrists, axis=0).max() > 0.05 * video.height


def test_results_follow_the_schemas(outputs: dict) -> None:
    files = outputs["files"]
    doc = json.loads(files[ResultName.POSES_JSON].read_text())
    validate("poses", doc)
    assert doc["generator"]["mode"] == "mock"
    assert len(doc["frames"]) == 60
    assert doc["skeleton"]["keypoints"][0] == "nose"
    metrics_doc = json.loads(files[ResultName.METRICS_JSON].read_text())
    validate("metrics", metrics_doc)
    dancer = metrics_doc["dancers"][0]
    assert dancer["summary"]["frames_in_view"] == 60
    assert 0 < dancer["summary"]["joint_angles"]["left_elbow"]["mean"] < 180
    assert len(dancer["series"]["angles"]["left_knee"]) == 60


def test_csv_is_long_format(outputs: dict) -> None:
    rows = list(csv.DictReader(outputs["files"][ResultName.POSES_CSV].open()))
    dancers = len(outputs["poses"].track_ids())
    assert list(rows[0]) == ["frame", "time", "track", "keypoint", "x", "y", "score"]
    assert len(rows) == 60 * dancers * 17


def test_annotated_video_is_browser_h264_with_source_timing(outputs: dict) -> None:
    annotated, video = outputs["annotated"], outputs["video"]
    rendered = probe.probe(annotated)
    assert rendered.frame_count == video.frame_count
    assert rendered.duration == pytest.approx(video.duration, abs=1e-3)
    assert rendered.has_audio
    with av.open(str(annotated)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
    # faststart: the index comes before the media data.
    head = annotated.read_bytes()[:4096]
    assert b"moov" in head
