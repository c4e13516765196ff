"""Mock analysis: synthetic dancers on the real video's timeline, no ML packages.

For frontend work without a GPU. One to three dancers (chosen from the job's
video so a re-run gives the same result) each follow a small 2D kinematic
model: a swaying, bouncing torso, arms that wave and bend, legs that step
and bend at the knee, all driven by the container's timestamps. Output has the
same type as the real analysis, so every later stage and the result schema
are exercised exactly as in production.

When the video has music (the listening stage found beats), the dancers dance to
it: each bounce lands on a beat, following the music's own tempo changes, one
dancer on the beat and the others a little early or late (chosen from the video
as the rest is). So the on-beat verdicts and the group's synchrony in mock
results have something true to say, for the page that shows them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.profiles import Profile
from shared.skeletons import COCO17
from worker.pipeline.decode import frame_times
from worker.pipeline.records import Detections, PoseSequence, ProgressFn, VideoInfo

if TYPE_CHECKING:
    from worker.pipeline.beats import Beats

_K = {name: i for i, name in enumerate(COCO17.keypoints)}


@dataclass(frozen=True)
class DancerStyle:
    """The fixed traits of one synthetic dancer."""

    center_x: float  # fraction of frame width
    height: float  # body height, fraction of frame height
    tempo_hz: float  # beats per second of the move
    sway: float  # horizontal travel, fraction of frame width
    phase: float
    arm_lift: float  # degrees the arms rise at the top of a wave
    bounce: float = 0.025  # how far the body dips on each beat, fraction of body height
    # Dancing to music: the body rises and sinks smoothly through the middle on each beat, so the
    # whole-body speed peaks there (the default bounce's sharp turn at the bottom is a speed peak
    # too, but the smooth stage rounds it off into two peaks either side of the beat).
    groove: bool = False


def _rotate(vector: np.ndarray, degrees: float) -> np.ndarray:
    r = math.radians(degrees)
    c, s = math.cos(r), math.sin(r)
    return np.array([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1]])


def _limb(start: np.ndarray, angle_from_down: float, length: float) -> np.ndarray:
    """The end of a limb hanging from `start`, turned `angle_from_down` degrees (image coords, y down)."""
    return start + _rotate(np.array([0.0, length]), angle_from_down)


def dancer_keypoints(style: DancerStyle, t: float, width: int, height: int) -> np.ndarray:
    """COCO-17 keypoints (x, y) of one dancer at time `t` seconds."""
    h = style.height * height
    beat = 2 * math.pi * style.tempo_hz * t + style.phase
    hip_center = np.array(
        [
            (style.center_x + style.sway * math.sin(beat / 4)) * width,
            0.5 * height + 0.02 * h - style.bounce * h * (math.sin(beat) if style.groove else abs(math.sin(beat))),
        ]
    )
    lean = 8 * math.sin(beat / 2)
    neck = hip_center + _rotate(np.array([0.0, -0.30 * h]), lean)
    across = _rotate(np.array([1.0, 0.0]), lean)
    # Facing the camera: the dancer's left is the image's right.
    shoulder = {"left": neck + across * 0.11 * h, "right": neck - across * 0.11 * h}
    hip = {"left": hip_center + across * 0.07 * h, "right": hip_center - across * 0.07 * h}

    points = np.zeros((len(COCO17.keypoints), 2))
    head = neck + _rotate(np.array([0.0, -0.12 * h]), lean + 6 * math.sin(beat))
    points[_K["nose"]] = head
    for side, sign in (("left", 1.0), ("right", -1.0)):
        wave = math.sin(beat + (0 if side == "left" else math.pi))
        # Arms: the upper arm swings out and up, the elbow bends with the beat.
        shoulder_angle = sign * -(25 + style.arm_lift * (0.5 + 0.5 * wave))
        elbow = _limb(shoulder[side], shoulder_angle + lean, 0.17 * h)
        wrist = _limb(elbow, shoulder_angle + sign * -(20 + 60 * (0.5 - 0.5 * wave)) + lean, 0.15 * h)
        # Legs: alternate steps, the knee bends as the foot lifts.
        step = math.sin(beat + (math.pi / 2 if side == "left" else -math.pi / 2))
        hip_angle = sign * -(4 + 14 * max(step, 0.0))
        knee = _limb(hip[side], hip_angle, 0.24 * h)
        ankle = _limb(knee, hip_angle + sign * (35 * max(step, 0.0)), 0.24 * h)

        points[_K[f"{side}_shoulder"]] = shoulder[side]
        points[_K[f"{side}_elbow"]] = elbow
        points[_K[f"{side}_wrist"]] = wrist
        points[_K[f"{side}_hip"]] = hip[side]
        points[_K[f"{side}_knee"]] = knee
        points[_K[f"{side}_ankle"]] = ankle
        points[_K[f"{side}_eye"]] = head + across * sign * 0.025 * h - np.array([0, 0.02 * h])
        points[_K[f"{side}_ear"]] = head + across * sign * 0.05 * h
    return points


def styles_for(seed: int) -> list[DancerStyle]:
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 4))
    centers = np.linspace(0.2, 0.8, count) if count > 1 else np.array([0.5])
    return [
        DancerStyle(
            center_x=float(center),
            height=float(rng.uniform(0.5, 0.7)),
            tempo_hz=float(rng.uniform(0.8, 1.6)),
            sway=float(rng.uniform(0.02, 0.08)),
            phase=float(rng.uniform(0, 2 * math.pi)),
            arm_lift=float(rng.uniform(60, 140)),
        )
        for center in centers
    ]


# How far off the beat each synthetic dancer is when there is music, seconds (negative: early).
BEAT_OFFSETS_S = (0.0, 0.06, -0.05)
# How far the body rises and sinks when dancing to music, fraction of body height: enough that the
# body, not the arms, makes the whole-body speed peak (with the default 0.025 the peaks wandered
# up to +-40 ms off the beat for dancers with small arm waves).
GROOVE_BOUNCE = 0.06


def beat_clock(beats: np.ndarray) -> Callable[[float], float]:
    """Beats counted along the music: 0 at the first beat, 1 at the second...; before the first and
    after the last, straight on at the median beat period."""
    period = float(np.median(np.diff(beats)))
    count = np.arange(len(beats), dtype=np.float64)

    def clock(t: float) -> float:
        if t <= beats[0]:
            return (t - float(beats[0])) / period
        if t >= beats[-1]:
            return len(beats) - 1 + (t - float(beats[-1])) / period
        return float(np.interp(t, beats, count))

    return clock


def dancing_to(music: Beats | None) -> Callable[[DancerStyle, float, int], tuple[DancerStyle, float]]:
    """(style, video time, dancer index) → the style and the time to draw it at.

    Without beats, each dancer keeps their own tempo. With beats, the model grooves (see
    `DancerStyle.groove`: the speed peaks where the kinematic `beat` phase crosses a multiple of pi,
    twice per cycle at 1 Hz) on the beat clock: half a model second per beat, shifted by the
    dancer's BEAT_OFFSETS_S."""
    if music is None or len(music.times) < 2:
        return lambda style, t, index: (style, t)
    clock = beat_clock(np.asarray(music.times, np.float64))

    def place(style: DancerStyle, t: float, index: int) -> tuple[DancerStyle, float]:
        offset = BEAT_OFFSETS_S[index % len(BEAT_OFFSETS_S)]
        return replace(style, tempo_hz=1.0, phase=0.0, bounce=GROOVE_BOUNCE, groove=True), clock(t - offset) / 2

    return place


class MockAnalyzer:
    """Synthetic dancers, deterministic for a given video."""

    def analyze(
        self, video: VideoInfo, profile: Profile, progress: ProgressFn, *, music: Beats | None = None
    ) -> PoseSequence:
        times = frame_times(video.path)
        seed = int(
            hashlib.sha256(f"{video.size_bytes}:{video.frame_count}:{video.duration}".encode()).hexdigest()[:8], 16
        )
        styles = styles_for(seed)
        rng = np.random.default_rng(seed + 1)
        place = dancing_to(music)
        frames: list[Detections] = []
        for index, t in enumerate(times):
            keypoints, boxes, scores = [], [], []
            for number, style in enumerate(styles):
                drawn, moment = place(style, t, number)
                xy = dancer_keypoints(drawn, moment, video.width, video.height)
                xy += rng.normal(0, 0.002 * video.height, xy.shape)  # a model's small jitter
                xy[:, 0] = xy[:, 0].clip(0, video.width - 1)
                xy[:, 1] = xy[:, 1].clip(0, video.height - 1)
                keypoints.append(np.hstack([xy, rng.uniform(0.75, 0.98, (len(xy), 1))]))
                margin = 0.06 * style.height * video.height
                boxes.append(
                    [
                        max(xy[:, 0].min() - margin, 0),
                        max(xy[:, 1].min() - margin, 0),
                        min(xy[:, 0].max() + margin, video.width - 1),
                        min(xy[:, 1].max() + margin, video.height - 1),
                    ]
                )
                scores.append(rng.uniform(0.85, 0.97))
            people = Detections.create(
                np.array(boxes),
                np.array(scores),
                np.array(keypoints),
                track_ids=range(1, len(styles) + 1),
            )
            frames.append(people.in_frame(index))
            progress(index + 1)
        generator: dict[str, Any] = {
            "mode": "mock",
            "profile": profile.value,
            "detector": None,
            "detection": None,
            "pose_model": "mock-kinematic-dancer",
            "tracker": None,
            "smoothing": None,
            "device": "cpu",
        }
        return PoseSequence.from_frames(COCO17, times, frames, generator)
