"""Mock mode's dancers dance to the video's music: the on-beat verdicts and the group's synchrony in mock
results are true of the motion drawn, so a page built against mock mode shows real states."""

from __future__ import annotations

import numpy as np
import pytest

from shared.profiles import Profile
from shared.result_schemas import validate
from tests.music import click_audio, write_music_video
from worker.analysis import mock
from worker.analysis.mock import BEAT_OFFSETS_S, MockAnalyzer
from worker.pipeline import beats, metrics, probe, smooth

SECONDS = 14.0
BEAT_S = 0.5  # 120 BPM
FIRST_BEAT_S = 0.3


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = tmp_path_factory.mktemp("mock-music") / "clip.mp4"
    clicks = np.arange(FIRST_BEAT_S, SECONDS, BEAT_S)
    write_music_video(
        path, click_audio(clicks, SECONDS), seconds=SECONDS, draw=lambda t: np.full((360, 640, 3), 40, np.uint8)
    )
    video = probe.probe(path)
    music = beats.find_beats(path)
    # Three dancers, whatever the video's seed picks (one to three): each offset is exercised.
    three = [style for seed in range(40) for style in mock.styles_for(seed) if len(mock.styles_for(seed)) == 3][:3]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mock, "styles_for", lambda seed: three)
        poses = MockAnalyzer().analyze(video, Profile.FAST, lambda n: None, music=music)
    poses = smooth.smooth_sequence(poses, video.width, video.height)
    return {"music": music, "metrics": metrics.compute_metrics("job", video, poses, music), "clicks": clicks}


def test_each_mock_dancer_is_as_far_off_the_beat_as_they_were_drawn(results: dict) -> None:
    music = results["music"]
    assert music.found and abs(music.tempo_bpm - 120) < 2
    doc = results["metrics"]
    validate("metrics", doc)
    for index, dancer in enumerate(doc["dancers"]):
        verdict = dancer["on_beat"]
        drawn_ms = 1000 * BEAT_OFFSETS_S[index]
        assert verdict is not None, dancer["track_id"]
        # An accent on most beats (some bounces are too soft to count), centred where the dancer was drawn.
        assert verdict["accents"] >= 0.5 * len(results["clicks"])
        assert abs(verdict["offset_ms"]["median"] - drawn_ms) <= 25, (index, verdict["offset_ms"])
        expected = "on the beat" if drawn_ms == 0 else "late" if drawn_ms > 0 else "early"
        assert verdict["tendency"] == expected, (index, verdict)


def test_the_late_mock_dancer_is_behind_the_group_and_the_early_one_ahead(results: dict) -> None:
    doc = results["metrics"]
    assert len(doc["dancers"]) == 3
    lags = {d["track_id"]: d["lag_ms"] for d in doc["synchrony"]["dancers"]}
    # Drawn at 0, +60 and -50 ms: each is judged against the median of the other two
    # (-50/+60 -> ~0 for track 1; 0/-50 -> -25 for track 2; 0/+60 -> +30 for track 3).
    assert abs(lags[1]) <= 1000 / 30, lags
    assert abs(lags[2] - 85) <= 1000 / 30, lags
    assert abs(lags[3] + 80) <= 1000 / 30, lags
