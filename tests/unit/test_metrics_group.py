"""metrics.json 1.1 as the metrics stage builds it: the music summary, each dancer's `on_beat`, and the
group's synchrony, on synthetic dancers whose truth is known (mock mode's kinematic model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.result_schemas import validate
from shared.skeletons import COCO17
from worker.analysis.mock import DancerStyle, dancer_keypoints
from worker.pipeline.beats import Beats
from worker.pipeline.metrics import compute_metrics
from worker.pipeline.records import Detections, PoseSequence, VideoInfo

SIZE = (1280, 720)
FPS = 30.0
STYLE = DancerStyle(center_x=0.3, height=0.5, tempo_hz=1.0, sway=0.04, phase=0.4, arm_lift=100.0)


def sequence(
    times: np.ndarray, dancers: dict[int, tuple[float, float, slice]], tempo: dict[int, float] | None = None
) -> PoseSequence:
    """Dancers by track id: (their x centre, how late they are in seconds, the frames they are in view);
    `tempo` gives some of them their own (Hz)."""
    tempo = tempo or {}

    def style(track_id: int, x: float) -> DancerStyle:
        return DancerStyle(**{**STYLE.__dict__, "center_x": x, "tempo_hz": tempo.get(track_id, STYLE.tempo_hz)})

    frames = []
    for index, t in enumerate(times):
        rows = [
            (track_id, dancer_keypoints(style(track_id, x), t - late, *SIZE))
            for track_id, (x, late, seen) in dancers.items()
            if index in range(len(times))[seen]
        ]
        if not rows:
            frames.append(Detections.create(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 17, 3))).in_frame(index))
            continue
        keypoints = np.array([np.hstack([xy, np.full((17, 1), 0.9)]) for _, xy in rows])
        boxes = np.array([[*xy.min(axis=0), *xy.max(axis=0)] for _, xy in rows])
        people = Detections.create(boxes, np.full(len(rows), 0.9), keypoints, track_ids=[i for i, _ in rows])
        frames.append(people.in_frame(index))
    return PoseSequence.from_frames(COCO17, times, frames, {"mode": "test"})


def video(times: np.ndarray) -> VideoInfo:
    return VideoInfo(
        path=Path("clip.mp4"), width=SIZE[0], height=SIZE[1], rotation=0, fps=FPS,
        duration=float(times[-1]) + 1 / FPS, frame_count=len(times), variable_frame_rate=False,
        has_audio=True, codec="h264", size_bytes=1,
    )  # fmt: skip


def test_the_dancer_behind_the_group_is_named_with_their_lag() -> None:
    times = np.arange(0, 12, 1 / FPS)
    poses = sequence(
        times,
        {
            1: (0.15, 0.0, slice(None)),
            2: (0.35, 0.0, slice(None)),
            3: (0.55, 0.25, slice(None)),  # a quarter of a second behind
            4: (0.75, 0.0, slice(None)),
            5: (0.9, 0.0, slice(0, 20)),  # a passer-by, in view for 2/3 s: not part of the group
        },
    )
    doc = compute_metrics("job", video(times), poses, None)
    validate("metrics", doc)
    sync = doc["synchrony"]
    assert sync["skipped"] is None
    lags = {d["track_id"]: d["lag_ms"] for d in sync["dancers"]}
    assert set(lags) == {1, 2, 3, 4}
    assert abs(lags[3] - 250) <= 1000 / FPS, lags
    assert all(abs(lags[t]) <= 1000 / FPS for t in (1, 2, 4)), lags
    assert sync["least_together"] and all(m["furthest_track_id"] == 3 for m in sync["least_together"][:1])
    assert len(sync["series"]["time"]) == len(sync["series"]["spread_deg"])
    # No beats were looked for: said so, and nobody has an on_beat verdict.
    assert doc["music"] == {"tempo_bpm": None, "beat_count": 0, "skipped": "the beats were not looked for"}
    assert all(d["on_beat"] is None for d in doc["dancers"])


def test_a_dancer_doing_other_moves_gets_no_lag() -> None:
    """A lag is only meaningful between dancers doing the same thing: the best of the tried lags between
    unrelated motions is noise, so it is null, with the low similarity that says why."""
    times = np.arange(0, 12, 1 / FPS)
    everyone = {track_id: (x, 0.0, slice(None)) for track_id, x in ((1, 0.2), (2, 0.4), (3, 0.6), (4, 0.8))}
    doc = compute_metrics("job", video(times), sequence(times, everyone, tempo={4: 1.37}), None)
    validate("metrics", doc)
    by_track = {d["track_id"]: d for d in doc["synchrony"]["dancers"]}
    assert by_track[4]["lag_ms"] is None and by_track[4]["similarity"] < 0.3, by_track[4]
    assert all(by_track[t]["lag_ms"] is not None and by_track[t]["similarity"] > 0.9 for t in (1, 2, 3)), by_track


def test_one_dancer_has_no_group_to_be_in_time_with() -> None:
    times = np.arange(0, 4, 1 / FPS)
    doc = compute_metrics("job", video(times), sequence(times, {1: (0.5, 0.0, slice(None))}), None)
    validate("metrics", doc)
    assert doc["synchrony"]["skipped"] == "only one dancer in view for 2 s or more"
    assert doc["synchrony"]["dancers"] == [] and doc["synchrony"]["series"] is None


def test_each_dancer_gets_an_on_beat_verdict_when_there_are_beats() -> None:
    times = np.arange(0, 12, 1 / FPS)
    poses = sequence(times, {1: (0.3, 0.0, slice(None)), 2: (0.7, 0.0, slice(None))})
    beat_times = np.arange(0.25, 12, 0.5)  # 120 BPM
    music = Beats(times=beat_times, tempo_bpm=120.0, skipped=None)
    doc = compute_metrics("job", video(times), poses, music)
    validate("metrics", doc)
    assert doc["music"] == {"tempo_bpm": 120.0, "beat_count": len(beat_times), "skipped": None}
    for dancer in doc["dancers"]:
        verdict = dancer["on_beat"]
        assert verdict is not None and verdict["accents"] > 0
        assert len(verdict["accent_times"]) == len(verdict["offsets_ms"]) == verdict["accents"]
        assert all(abs(o) <= 250 for o in verdict["offsets_ms"])  # the nearest beat is at most half a beat away
