"""Wide stage shots with small dancers, built from real photos of people, with known boxes.

A group filmed from the back of a hall is the hard case for a detector: every
dancer is 80-200 px tall in a 1280x720 frame. `stage_clip` builds that scene
from the full-length people in Ultralytics' `bus.jpg`: each is cut out once
with OpenCV's GrabCut, then composited (scaled, some mirrored) onto a stage,
nearer dancers lower and bigger, each walking across and bouncing on a quick
3 Hz accent. Because the scene is composed, the true box of every dancer in
every frame is known (`StageClip.truth`), and tests can count that each one
is found and keeps one id. `cutoff_clip` places a big dancer half outside the
left edge of the frame, moving in and out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from tests.clips import package_photo, write_clip
from worker.pipeline.records import Detections, PoseSequence
from worker.pipeline.track import iou_matrix

# Full-length people in bus.jpg (1080x810), as a careful detector run boxes them.
BUS_PEOPLE = {"coat": (54, 404, 238, 900), "jacket": (225, 406, 344, 861)}


@dataclass(frozen=True)
class Sprite:
    """A cut-out person: BGR pixels and an alpha mask, cropped to the person."""

    image: np.ndarray
    alpha: np.ndarray  # float32 0..1


@dataclass(frozen=True)
class Dancer:
    """One composited dancer: which sprite, how tall, and how it moves."""

    sprite: str
    height: float  # px at rest
    feet_y: float  # px, where the feet stand (depth: lower is nearer)
    x0: float  # px, centre at t=0
    walk: float  # px/s, sideways
    mirror: bool = False
    bounce_hz: float = 3.0
    bounce: float = 0.05  # of height: a quick up-and-down accent
    sway: float = 0.0  # px, sideways back and forth ...
    sway_hz: float = 0.5  # ... at this rate
    delay: float = 0.0  # s: the bounce runs this much behind the clock (a dancer late on the music)

    def centre_x(self, t: float) -> float:
        return self.x0 + self.walk * t + self.sway * math.sin(2 * math.pi * self.sway_hz * t)

    def lift(self, t: float) -> float:
        """How far the feet are off the floor at `t` (px): the bounce."""
        phase = 2 * math.pi * self.bounce_hz * (t - self.delay)
        return self.bounce * self.height * 0.5 * (1 - math.cos(phase))

    def accents(self, seconds: float) -> np.ndarray:
        """Times of the peaks of the bounce's speed up to `seconds`: midway up and midway down, twice a cycle."""
        half = 0.5 / self.bounce_hz
        return np.arange((self.delay + half / 2) % half, seconds, half)


@dataclass
class StageClip:
    path: Path
    times: list[float]
    truth: np.ndarray  # (frames, dancers, 4) true box of each dancer, clipped to the frame; NaN when out of view
    visible: np.ndarray  # (frames, dancers) share of each dancer's width inside the frame
    size: tuple[int, int]


def match_rows(truth: np.ndarray, people: Detections, min_iou: float = 0.5) -> np.ndarray:
    """(frames, dancers) index of the row of `people` whose box matches each true dancer (`truth`, as in
    `StageClip.truth`) in that frame with IoU >= `min_iou`; -1 where none does."""
    rows = np.full(truth.shape[:2], -1)
    for frame, boxes in enumerate(truth):
        candidates = np.flatnonzero(people.frames == frame)
        in_view = ~np.isnan(boxes).any(axis=1)
        if not len(candidates) or not in_view.any():
            continue
        iou = iou_matrix(boxes[in_view], people.boxes[candidates])
        rows[frame, in_view] = np.where(iou.max(axis=1) >= min_iou, candidates[iou.argmax(axis=1)], -1)
    return rows


def matched_ids(truth: np.ndarray, seq: PoseSequence) -> np.ndarray:
    """(frames, dancers) the track id whose box matches each true dancer (`truth` as in `StageClip.truth`,
    IoU >= 0.5), 0 where none does."""
    rows = match_rows(truth, seq.people)
    return np.where(rows >= 0, seq.people.track_ids[rows], 0)


def recall(expected: list[np.ndarray], found: list[np.ndarray], min_iou: float = 0.5) -> float:
    """Share of `expected` boxes (one (N, 4) array per frame) that a `found` box matches with IoU >= `min_iou`."""
    hits = sum(
        int((iou_matrix(e, f).max(axis=1) >= min_iou).sum()) for e, f in zip(expected, found, strict=True) if len(f)
    )
    return hits / max(sum(len(e) for e in expected), 1)


@lru_cache(maxsize=4)
def bus_sprite(name: str) -> Sprite:
    """One person of bus.jpg cut out with GrabCut (deterministic: OpenCV's RNG is seeded)."""
    photo = package_photo("bus.jpg")
    if photo is None:
        raise FileNotFoundError("bus.jpg (ultralytics assets) is not installed")
    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    x1, y1, x2, y2 = BUS_PEOPLE[name]
    margin = 12
    rx, ry = max(x1 - margin, 0), max(y1 - margin, 0)
    rect = (rx, ry, min(x2 + margin, image.shape[1] - 1) - rx, min(y2 + margin, image.shape[0] - 1) - ry)
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.setRNGSeed(0)
    cv2.grabCut(image, mask, rect, np.zeros((1, 65)), np.zeros((1, 65)), 5, cv2.GC_INIT_WITH_RECT)
    solid = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    # Keep the person (the largest component), not stray bits of the background.
    count, labels, stats, _ = cv2.connectedComponentsWithStats(solid)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) if count > 1 else 1
    solid = (labels == largest).astype(np.uint8)
    ys, xs = np.nonzero(solid)
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    alpha = cv2.GaussianBlur(solid[top:bottom, left:right].astype(np.float32), (5, 5), 0)  # soft edge
    return Sprite(image=image[top:bottom, left:right].copy(), alpha=alpha)


def stage_background(size: tuple[int, int]) -> np.ndarray:
    """A dim back wall with a few lights over a wooden floor, like a hall filmed from its back."""
    width, height = size
    horizon = int(0.52 * height)
    rows = np.linspace(0, 1, height)[:, None]
    wall = np.array([70, 52, 46], np.float32) * (0.6 + 0.4 * rows)
    floor = np.array([60, 105, 150], np.float32) * (0.5 + 0.7 * rows)
    image = np.where(np.arange(height)[:, None, None] < horizon, wall[:, None, :], floor[:, None, :])
    image = np.broadcast_to(image, (height, width, 3)).astype(np.float32).copy()
    for i in range(1, 12):  # floor boards converging on the back wall
        x = int(width * i / 12)
        cv2.line(image, (width // 2 + (x - width // 2) // 3, horizon), (x, height), (40, 80, 115), 2, cv2.LINE_AA)
    for i in range(6):  # lights on the wall
        cv2.circle(image, (int(width * (i + 0.5) / 6), int(0.18 * height)), 6, (200, 230, 250), -1, cv2.LINE_AA)
    rng = np.random.default_rng(7)
    image += rng.normal(0, 3.0, image.shape).astype(np.float32)  # sensor grain
    return np.clip(image, 0, 255).astype(np.uint8)


def paste(canvas: np.ndarray, sprite: Sprite, centre_x: float, feet_y: float, height: float, mirror: bool) -> tuple:
    """Composite `sprite` scaled to `height`, feet at `feet_y`, at sub-pixel precision (the motion is smooth, not a
    1 px staircase); returns its box clipped to the frame, or None when it is out of view."""
    src_h, src_w = sprite.image.shape[:2]
    scale = height / src_h
    x1, y1 = centre_x - src_w * scale / 2, feet_y - height
    box = (max(x1, 0.0), max(y1, 0.0), min(x1 + src_w * scale, canvas.shape[1]), min(feet_y, canvas.shape[0]))
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return None
    # Only the canvas region under the sprite is warped and blended.
    left, top = int(box[0]), int(box[1])
    right, bottom = min(int(np.ceil(box[2])) + 1, canvas.shape[1]), min(int(np.ceil(box[3])) + 1, canvas.shape[0])
    sx = -scale if mirror else scale
    tx = (x1 + src_w * scale if mirror else x1) - left
    matrix = np.array([[sx, 0.0, tx], [0.0, scale, y1 - top]])
    size = (right - left, bottom - top)
    image = cv2.warpAffine(sprite.image, matrix, size, flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(sprite.alpha, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0.0)[..., None]
    region = canvas[top:bottom, left:right].astype(np.float32)
    canvas[top:bottom, left:right] = (alpha * image + (1 - alpha) * region).astype(np.uint8)
    return box


def scene_frame(dancers: list[Dancer], background: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """One frame of `dancers` on `background` at `t`, and their true boxes (clipped; NaN rows out of view)."""
    canvas = background.copy()
    boxes = np.full((len(dancers), 4), np.nan)
    for i in sorted(range(len(dancers)), key=lambda i: dancers[i].feet_y):  # far dancers first: nearer ones cover them
        d = dancers[i]
        box = paste(canvas, bus_sprite(d.sprite), d.centre_x(t), d.feet_y - d.lift(t), d.height, d.mirror)
        if box is not None:
            boxes[i] = box
    return canvas, boxes


def render_scene(
    dancers: list[Dancer], size: tuple[int, int], times: list[float]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames of `dancers` on the stage at `times`, and their true boxes (clipped to the frame; NaN out of view)."""
    background = stage_background(size)
    frames, truth = zip(*(scene_frame(dancers, background, t) for t in times), strict=True)
    return list(frames), np.stack(truth)


def wide_shot_dancers(size: tuple[int, int] = (1280, 720)) -> list[Dancer]:
    """Six dancers 80-200 px tall (at 720p; scaled with the frame) spread over the stage, none overlapping."""
    width, height = size
    k = height / 720
    spots = [  # (sprite, height px at 720p, feet y at 720p, x fraction, walk px/s at 720p, mirror)
        ("coat", 84, 430, 0.14, 20, False),
        ("jacket", 96, 450, 0.50, -18, True),
        ("coat", 118, 500, 0.84, -22, True),
        ("jacket", 140, 560, 0.30, 26, False),
        ("coat", 168, 620, 0.66, -24, False),
        ("jacket", 200, 700, 0.10, 20, True),
    ]
    return [
        Dancer(sprite=s, height=h * k, feet_y=y * k, x0=x * width, walk=v * k, mirror=m, bounce_hz=3.0)
        for s, h, y, x, v, m in spots
    ]


def crossing_dancers(size: tuple[int, int] = (1280, 720)) -> list[Dancer]:
    """A far dancer walking behind a nearer one, mostly hidden from 0.6 s to 1.9 s, and a small one apart."""
    width, height = size
    k = height / 720
    return [
        Dancer(sprite="jacket", height=140 * k, feet_y=560 * k, x0=600 * k, walk=40 * k),
        Dancer(sprite="coat", height=168 * k, feet_y=620 * k, x0=700 * k, walk=-40 * k, mirror=True),
        Dancer(sprite="coat", height=90 * k, feet_y=460 * k, x0=0.12 * width, walk=10 * k),
    ]


def cutoff_dancers(size: tuple[int, int] = (1280, 720)) -> list[Dancer]:
    """A dancer half outside the left edge (swaying in and out), and one fully in view."""
    width, height = size
    k = height / 720
    return [
        Dancer(sprite="coat", height=420 * k, feet_y=690 * k, x0=0.0, walk=0.0, bounce=0.0, sway=60 * k),
        Dancer(sprite="jacket", height=360 * k, feet_y=660 * k, x0=0.62 * width, walk=-15 * k, mirror=True),
    ]


def stage_clip(
    path: Path,
    dancers: list[Dancer],
    *,
    seconds: float = 2.0,
    fps: float = 15.0,
    size: tuple[int, int] = (1280, 720),
    audio: bool = False,
) -> StageClip:
    """Encode the scene to H.264 (near-lossless, as a phone would film it)."""
    times = [i / fps for i in range(max(2, round(seconds * fps)))]
    frames, truth = render_scene(dancers, size, times)
    write_clip(frames, path, fps, audio=audio, times=times, preset="veryfast", crf=18)
    full_width = np.array(
        [d.height * bus_sprite(d.sprite).image.shape[1] / bus_sprite(d.sprite).image.shape[0] for d in dancers]
    )
    visible = np.nan_to_num((truth[..., 2] - truth[..., 0]) / full_width, nan=0.0)
    return StageClip(path=path, times=times, truth=truth, visible=visible, size=size)
