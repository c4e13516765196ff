"""worker/pipeline/timing.py: accents of a synthetic dancer whose hands hit at known times, their offsets
from beats, and the issue's proof: a real video with clicks at known times and a skeleton hitting a known
time after each click gives those offsets through find_beats and dancer_timing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from shared.skeletons import COCO17
from tests.music import click_audio, write_music_video
from worker.pipeline.beats import Beats, find_beats
from worker.pipeline.records import Detections
from worker.pipeline.timing import TOLERANCE_S, accent_times, dancer_timing, on_beat, whole_body_speed

K = {name: i for i, name in enumerate(COCO17.keypoints)}
# A standing dancer, (x, y) in body heights from the hip centre, facing the camera.
STANDING = {
    "nose": (0.0, -0.78), "left_eye": (0.02, -0.80), "right_eye": (-0.02, -0.80),
    "left_ear": (0.045, -0.79), "right_ear": (-0.045, -0.79),
    "left_shoulder": (0.11, -0.60), "right_shoulder": (-0.11, -0.60),
    "left_elbow": (0.20, -0.45), "right_elbow": (-0.20, -0.45),
    "left_wrist": (0.24, -0.30), "right_wrist": (-0.24, -0.30),
    "left_hip": (0.07, 0.0), "right_hip": (-0.07, 0.0),
    "left_knee": (0.08, 0.24), "right_knee": (-0.08, 0.24),
    "left_ankle": (0.08, 0.48), "right_ankle": (-0.08, 0.48),
}  # fmt: skip
MOVE_S = 0.2  # each hit is a minimum-jerk move this long, fastest at its middle: the accent


def minimum_jerk(tau: np.ndarray) -> np.ndarray:
    """0 -> 1 over tau in [0, 1] with a bell-shaped speed peaking at tau = 0.5 (Flash & Hogan 1985)."""
    tau = np.clip(tau, 0.0, 1.0)
    return 10 * tau**3 - 15 * tau**4 + 6 * tau**5


def hitting_dancer(
    times: np.ndarray,
    hits: np.ndarray,
    *,
    height: float = 300.0,
    centre: tuple[float, float] = (320.0, 200.0),
    jitter_px: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(keypoints (T, 17, 3), heights (T,)): a dancer swaying slowly whose arms snap up and down, the
    wrists by 0.15 body heights, fastest exactly at each of `hits`; optional Gaussian keypoint jitter."""
    times = np.asarray(times, dtype=np.float64)
    # Arm position: +1 after an odd number of hits, 0 after an even one, each change a minimum-jerk move.
    arm = np.zeros_like(times)
    for n, hit in enumerate(np.sort(hits)):
        step = minimum_jerk((times - hit) / MOVE_S + 0.5)
        arm += step if n % 2 == 0 else -step
    sway = 0.02 * np.sin(2 * np.pi * 0.2 * times)  # slow, in body heights
    points = np.zeros((len(times), len(COCO17.keypoints), 3))
    for name, (x, y) in STANDING.items():
        lift = {"wrist": 0.15, "elbow": 0.075}.get(name.split("_")[-1], 0.0)
        points[:, K[name], 0] = centre[0] + (x + sway) * height
        points[:, K[name], 1] = centre[1] + (y - lift * arm) * height
    points[..., 2] = 0.9
    if jitter_px:
        points[..., :2] += np.random.default_rng(seed).normal(0.0, jitter_px, points[..., :2].shape)
    return points.astype(np.float32), np.full(len(times), height, np.float32)


def track_of(times: np.ndarray, keypoints: np.ndarray, frames: np.ndarray | None = None) -> Detections:
    """A track's rows: boxes around the keypoints, one row per frame."""
    xy = keypoints[..., :2]
    boxes = np.concatenate([xy.min(axis=1), xy.max(axis=1)], axis=1)
    track = Detections.create(boxes, np.full(len(times), 0.9), keypoints, track_ids=np.ones(len(times), int))
    track.frames[:] = np.arange(len(times)) if frames is None else frames
    return track


BEATS = np.arange(0.5, 20.0, 0.5)  # 120 BPM
FPS_TIMES = np.arange(0, 20.5, 1 / 30)


def offsets_for(shift_s: float, **dancer: float) -> dict:
    keypoints, heights = hitting_dancer(FPS_TIMES, BEATS + shift_s, **dancer)
    result = on_beat(accent_times(FPS_TIMES, keypoints, heights), BEATS)
    assert result is not None
    return result


def test_accents_are_found_at_the_hits_to_a_few_ms_at_30_fps() -> None:
    hits = BEATS + np.random.default_rng(1).uniform(0, 1 / 30, len(BEATS))  # at every phase between frames
    keypoints, heights = hitting_dancer(FPS_TIMES, hits)
    accents = accent_times(FPS_TIMES, keypoints, heights)
    assert len(accents) == len(hits)
    assert np.abs(accents - hits).max() <= 0.005, np.round((accents - hits) * 1000, 1)


def test_two_moves_closer_than_the_minimum_spacing_are_one_accent() -> None:
    times = np.arange(0, 10, 1 / 60)  # 60 fps
    hits = np.array([1.0, 1.15, 3.0, 3.15, 7.0, 7.3])
    keypoints, heights = hitting_dancer(times, hits)
    accents = accent_times(times, keypoints, heights)
    assert np.allclose(accents, [1.0, 3.0, 7.0, 7.3], atol=0.005), accents


def test_accents_forty_ms_after_each_beat_read_late() -> None:
    result = offsets_for(0.040)
    assert result["offset_ms"]["mean"] == pytest.approx(40, abs=15)
    assert result["offset_ms"]["median"] == pytest.approx(40, abs=15)
    assert result["tendency"] == "late"
    assert result["on_beat_share"] == pytest.approx(1.0)
    assert result["accents"] == len(BEATS) and result["tolerance_ms"] == TOLERANCE_S * 1000
    assert len(result["accent_times"]) == len(result["offsets_ms"]) == result["accents"]


def test_accents_sixty_ms_before_each_beat_read_early_even_with_keypoint_jitter() -> None:
    result = offsets_for(-0.060, jitter_px=1.0, seed=3)
    assert result["offset_ms"]["mean"] == pytest.approx(-60, abs=15)
    assert result["tendency"] == "early"
    assert result["on_beat_share"] >= 0.9
    assert result["offset_ms"]["std"] <= 15


def test_accents_on_the_beat_read_on_the_beat() -> None:
    result = offsets_for(0.0, jitter_px=1.0, seed=4)
    assert abs(result["offset_ms"]["mean"]) <= 10
    assert result["tendency"] == "on the beat"
    assert result["on_beat_share"] == pytest.approx(1.0)
    assert result["off_beat_share"] == 0.0


def test_accents_at_random_times_are_rarely_on_the_beat() -> None:
    rng = np.random.default_rng(7)
    hits = np.cumsum(rng.uniform(0.3, 0.7, 60))
    hits = hits[hits < 19.5]
    keypoints, heights = hitting_dancer(FPS_TIMES, hits)
    result = on_beat(accent_times(FPS_TIMES, keypoints, heights), BEATS)
    assert result is not None and result["accents"] >= 0.9 * len(hits)
    chance = 2 * TOLERANCE_S / 0.5  # 0.28: the share of the beat cycle within the tolerance
    assert result["on_beat_share"] <= chance + 0.15
    assert 0.25 <= result["off_beat_share"] <= 0.75  # about half the cycle is nearer the off-beat


def test_accents_on_the_off_beat_are_off_the_beat_not_very_late() -> None:
    result = offsets_for(0.25)  # every accent on the "and"
    assert result["on_beat_share"] == 0.0 and result["off_beat_share"] == 1.0
    assert result["offset_ms"] == {"mean": None, "median": None, "std": None}
    assert result["tendency"] is None
    assert all(abs(abs(offset) - 250) <= 10 for offset in result["offsets_ms"])


def test_a_tendency_needs_a_median_clear_of_the_beat_by_its_own_spread() -> None:
    """+30 ms is late for a dancer whose 20 accents agree (9 ms spread), but not for one whose accents
    spread by 61 ms (a small dancer on real keypoints): there the median's standard error is 17 ms."""
    beats = np.arange(0.6, 13.0, 0.6)  # 100 BPM, so every offset below stays within a quarter period
    for spread, expected in ((0.015, "late"), (0.100, "on the beat")):
        offsets = 0.030 + spread * np.linspace(-1, 1, 20)
        result = on_beat(beats[:20] + offsets, beats)
        assert result is not None and result["near_beat"] == 20
        assert result["offset_ms"]["median"] == pytest.approx(30, abs=0.1)
        assert result["tendency"] == expected, (spread, result["offset_ms"])


def test_no_beats_or_no_accents_give_none() -> None:
    keypoints, heights = hitting_dancer(FPS_TIMES, BEATS)
    accents = accent_times(FPS_TIMES, keypoints, heights)
    assert on_beat(accents, np.zeros(0)) is None
    assert on_beat(accents, np.array([1.0])) is None  # one beat has no period
    assert on_beat(np.zeros(0), BEATS) is None
    assert on_beat(accents + 100.0, BEATS) is None  # accents long after the music
    assert on_beat(BEATS[:3], BEATS) is None  # three accents in 20 s: too few to call anyone's timing
    assert on_beat(BEATS[:4], BEATS) is not None
    skipped = Beats(times=np.zeros(0), tempo_bpm=None, skipped="the video has no audio track")
    assert dancer_timing(FPS_TIMES, track_of(FPS_TIMES, keypoints), skipped) is None


def test_keypoint_jitter_alone_is_not_an_accent() -> None:
    keypoints, heights = hitting_dancer(FPS_TIMES, np.zeros(0), jitter_px=1.5, seed=5)
    assert len(accent_times(FPS_TIMES, keypoints, heights)) <= 2  # over 20 s


def test_unsure_keypoints_are_ignored() -> None:
    keypoints, heights = hitting_dancer(FPS_TIMES, BEATS + 0.04)
    wild = keypoints.copy()
    rng = np.random.default_rng(6)
    ankles = [K["left_ankle"], K["right_ankle"]]
    wild[:, ankles, :2] += rng.normal(0.0, 40.0, (len(FPS_TIMES), 2, 2))  # wild guesses ...
    wild[:, ankles, 2] = 0.1  # ... that the model was not sure of
    # The same accents (to a millisecond: the mean over 15 keypoints instead of 17 scales the peaks).
    assert np.allclose(accent_times(FPS_TIMES, wild, heights), accent_times(FPS_TIMES, keypoints, heights), atol=0.001)


def test_gaps_in_a_track_give_no_accent_inside_and_keep_the_others() -> None:
    rng = np.random.default_rng(8)
    keep = rng.random(len(FPS_TIMES)) > 0.15  # 15 % of frames missing here and there ...
    keep &= ~((FPS_TIMES > 8.0) & (FPS_TIMES < 9.6))  # ... and the dancer unseen for 1.6 s
    times = FPS_TIMES[keep]
    hits = BEATS + 0.04
    keypoints, heights = hitting_dancer(times, hits)
    accents = accent_times(times, keypoints, heights)
    assert not np.any((accents > 8.0) & (accents < 9.6))
    mid, speed = whole_body_speed(times, keypoints, heights)
    assert np.all(np.isnan(speed[(mid > 8.0) & (mid < 9.6)]))
    offsets = accents - hits[np.abs(hits[:, None] - accents[None, :]).argmin(axis=0)]
    assert np.abs(offsets).max() <= 0.015
    assert len(accents) >= 0.8 * np.sum((hits < 8.0) | (hits > 9.6))


# The proof: a real H.264 + AAC video with clicks at 120 BPM and a skeleton drawn in it.
# The audio starts 0.25 s after the video, as a phone's microphone may: a click at c in the audio is
# at c + 0.25 on the video's timeline. The drawn dancer hits 40 ms after each click.
SECONDS = 20.0
CLICKS = np.arange(0.43, SECONDS - 0.3, 0.5)
AUDIO_START = 0.25


def draw_dancer(t: float) -> np.ndarray:
    hits = CLICKS + AUDIO_START + 0.040
    keypoints, _ = hitting_dancer(np.array([t]), hits, height=200.0, centre=(160.0, 130.0))
    image = np.full((240, 320, 3), 40, np.uint8)
    for a, b in COCO17.edges:
        pa, pb = keypoints[0, a, :2].astype(int), keypoints[0, b, :2].astype(int)
        cv2.line(image, (int(pa[0]), int(pa[1])), (int(pb[0]), int(pb[1])), (255, 255, 255), 3)
    return image


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Beats]:
    path = tmp_path_factory.mktemp("timing") / "dance.mp4"
    audio = click_audio(CLICKS, SECONDS, seed=11)
    times = write_music_video(path, audio, seconds=SECONDS, audio_start=AUDIO_START, draw=draw_dancer)
    return times, find_beats(path)


@pytest.mark.parametrize(("shift_ms", "tendency"), [(40, "late"), (-60, "early"), (0, "on the beat")])
def test_a_skeleton_on_a_known_tempo_in_a_real_video_gives_the_known_offsets(
    clip: tuple[np.ndarray, Beats], shift_ms: int, tendency: str
) -> None:
    times, music = clip
    assert music.found and music.tempo_bpm == pytest.approx(120, abs=2)
    # The dancer's keypoints as a pose model would give them from the frames (the 40 ms one is the one drawn).
    keypoints, _ = hitting_dancer(times, CLICKS + AUDIO_START + shift_ms / 1000, height=200.0, centre=(160.0, 130.0))
    result = dancer_timing(times, track_of(times, keypoints), music)
    assert result is not None
    assert result["offset_ms"]["mean"] == pytest.approx(shift_ms, abs=15)
    assert result["offset_ms"]["median"] == pytest.approx(shift_ms, abs=15)
    assert result["tendency"] == tendency
    assert result["on_beat_share"] >= 0.95
    assert result["accents"] >= len(CLICKS) - 1
