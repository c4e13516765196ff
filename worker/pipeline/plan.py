"""How to look at each frame so that small dancers are big enough for the detector.

YOLO11n-pose finds a person reliably once they are about 96 px tall in the
image it is given. Measured on the stage clip of tests/stage.py (six dancers
84-200 px tall in 1280x720): 0 of 6 found at a 384 px input, 2 at 640, 4 at
1024, all 6 at 1280. A group filmed from the back of a hall needs its dancers
enlarged, and there are two ways to do that:

- **frame**: the whole frame at a larger input size. Cost grows with the
  pixels: 9 ms at 384 px, 75 ms at 1280 px on 2 CPU cores.
- **crops**: a square around each tracked dancer (`crop_context` x the box),
  scaled to `crop_imgsz` so the dancer is about 120 px tall, all in one
  batch: 21 ms for six dancers. This is the top-down scheme of RTMPose-style
  pipelines, and the keypoints come from the enlarged dancer too. Dancers who
  overlap (one passing behind another) share one crop, enlarged so the
  smallest of them is still 120 px, so the model sees them as the whole frame
  shows them (`plan_crops`).

Crops only see dancers that are already known. So a **careful** look at the
whole frame, at the size of the reference run (1280 px), comes first and then
repeats at intervals to find newcomers: every `discover_every_s` while working
from crops, and every `recheck_every_s` while working on a cheaper whole frame.

`LookPolicy.next` decides frame by frame. It takes the smallest dancer the
tracker expects, the input size the whole frame would need for them, and the
pixel cost of each way, and switches only when the other way is clearly
cheaper (hysteresis). What it chose, and why, goes into the results'
`generator.detection` (`LookPolicy.summary`).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

LookKind = Literal["careful", "frame", "crops"]


@dataclass(frozen=True)
class SearchConfig:
    careful_imgsz: int = 1280  # the whole frame, carefully: the reference run's input size
    min_imgsz: int = 384  # the whole frame is never fed smaller than this
    person_px: float = 96.0  # a person this tall in the model's input is found reliably
    crop_imgsz: int = 192  # input size of each crop
    crop_context: float = 1.6  # crop side / the long side of the dancer's box
    discover_every_s: float = 0.5  # careful look while working from crops
    recheck_every_s: float = 2.0  # careful look while working on a smaller whole frame
    crop_overhead: float = 1.15  # a crop costs this many times its pixels (per-image work around the model)
    switch_margin: float = 0.2  # the other way must be this much cheaper before switching
    stride: int = 32


@dataclass(frozen=True)
class Look:
    kind: LookKind
    imgsz: int  # the whole frame's long side in the model (careful, frame); the usual crop side (crops)
    crops: tuple[Crop, ...] = ()


@dataclass(frozen=True)
class Crop:
    """A square of the frame, fed to the model at `imgsz` x `imgsz`."""

    region: np.ndarray  # (4,) x1, y1, x2, y2 in frame pixels
    imgsz: int


def input_pixels(width: int, height: int, imgsz: int, stride: int = 32) -> int:
    """Pixels the model sees for a `width` x `height` frame fed at long side `imgsz` (letterboxed to `stride`)."""
    ratio = imgsz / max(width, height)
    return math.ceil(width * ratio / stride) * stride * math.ceil(height * ratio / stride) * stride


def overlapping_groups(boxes: np.ndarray, margin: float = 0.1) -> list[list[int]]:
    """Indices of boxes that overlap (each grown by `margin` of its size), chained: dancers who touch or hide
    one another."""
    size = boxes[:, 2:] - boxes[:, :2]
    grown = np.c_[boxes[:, :2] - margin * size, boxes[:, 2:] + margin * size]
    touch = (
        (grown[:, None, 0] < grown[None, :, 2]) & (grown[None, :, 0] < grown[:, None, 2])
        & (grown[:, None, 1] < grown[None, :, 3]) & (grown[None, :, 1] < grown[:, None, 3])
    )  # fmt: skip
    group = list(range(len(boxes)))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(touch, 1)), strict=True):
        group[root(int(j))] = root(int(i))
    members: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        members.setdefault(root(i), []).append(i)
    return list(members.values())


def plan_crops(boxes: np.ndarray, config: SearchConfig) -> list[Crop]:
    """One square crop per dancer, `crop_context` times their box, at `crop_imgsz`; dancers who overlap share one
    crop over all of them, its input enlarged so the smallest is as big as a lone dancer would be.

    Cropping overlapping dancers apart would cut each crop through the other dancer, and the model sees
    something else than on the whole frame (a head above someone in front, taken for a whole person).
    """
    crops = []
    for members in overlapping_groups(boxes):
        group = boxes[members]
        union = np.r_[group[:, :2].min(axis=0), group[:, 2:].max(axis=0)]
        long_side = float(np.max(union[2:] - union[:2]))
        smallest = float(np.max(group[:, 2:] - group[:, :2], axis=1).min())
        side = max(config.crop_context * long_side, config.crop_imgsz / 4)
        imgsz = config.crop_imgsz * long_side / max(smallest, 1.0)
        imgsz = min(math.ceil(imgsz / config.stride) * config.stride, config.careful_imgsz)
        centre = (union[:2] + union[2:]) / 2
        crops.append(Crop(np.r_[centre - side / 2, centre + side / 2], int(imgsz)))
    return crops


@dataclass
class LookPolicy:
    """Chooses each frame's look; one instance per video."""

    width: int
    height: int
    fps: float
    config: SearchConfig = field(default_factory=SearchConfig)
    mode: Literal["frame", "crops"] = "frame"
    last_careful: int | None = None
    counts: Counter[str] = field(default_factory=Counter)
    frame_sizes: set[int] = field(default_factory=set)
    # Per frame with dancers: the smallest one's size and how many there were. The summary reports the typical
    # frame (median), not the one where a dancer half hidden behind another showed only their head.
    smallest_seen: list[float] = field(default_factory=list)
    dancers_seen: list[int] = field(default_factory=list)

    def frames_every(self, seconds: float) -> int:
        return max(1, round(seconds * (self.fps if self.fps > 0 else 30.0)))

    def frame_imgsz(self, smallest_px: float) -> int:
        """Input size at which the whole frame shows a dancer `smallest_px` tall at `person_px`."""
        c = self.config
        needed = c.person_px / max(smallest_px, 1.0) * max(self.width, self.height)
        return int(min(max(math.ceil(needed / c.stride) * c.stride, c.min_imgsz), c.careful_imgsz))

    def costs(self, frame_imgsz: int, crops: list[Crop]) -> tuple[float, float]:
        """Pixels per frame, careful looks included, of working on the whole frame and of working from crops."""
        c = self.config
        careful = input_pixels(self.width, self.height, c.careful_imgsz, c.stride)
        frame: float = input_pixels(self.width, self.height, frame_imgsz, c.stride)
        if frame_imgsz < c.careful_imgsz:
            frame += careful / self.frames_every(c.recheck_every_s)
        cropped = sum(crop.imgsz**2 for crop in crops) * c.crop_overhead
        return frame, cropped + careful / self.frames_every(c.discover_every_s)

    def next(self, frame_index: int, expected: np.ndarray) -> Look:
        """The look for frame `frame_index`, given the (M, 4) boxes where the tracker expects dancers."""
        c = self.config
        if len(expected):
            sides = np.max(expected[:, 2:] - expected[:, :2], axis=1)
            smallest = float(sides.min())
            self.smallest_seen.append(smallest)
            self.dancers_seen.append(len(expected))
            frame_imgsz = self.frame_imgsz(smallest)
            crops = plan_crops(expected, c)
            frame_cost, crops_cost = self.costs(frame_imgsz, crops)
            if self.mode == "frame" and crops_cost < (1 - c.switch_margin) * frame_cost:
                self.mode = "crops"
            elif self.mode == "crops" and crops_cost > (1 + c.switch_margin) * frame_cost:
                self.mode = "frame"
        else:
            self.mode, frame_imgsz, crops = "frame", c.min_imgsz, []  # nobody known: big newcomers show at any size

        every = c.discover_every_s if self.mode == "crops" else c.recheck_every_s
        due = self.last_careful is None or frame_index - self.last_careful >= self.frames_every(every)
        if due or (self.mode == "frame" and frame_imgsz >= c.careful_imgsz):
            self.last_careful = frame_index
            return self._count(Look("careful", c.careful_imgsz))
        if self.mode == "crops":
            return self._count(Look("crops", c.crop_imgsz, tuple(crops)))
        self.frame_sizes.add(frame_imgsz)
        return self._count(Look("frame", frame_imgsz))

    def _count(self, look: Look) -> Look:
        self.counts[look.kind] += 1
        return look

    def summary(self) -> dict[str, Any]:
        """What was chosen for the video and why: the results' `generator.detection`."""
        c = self.config
        frames = {kind: self.counts.get(kind, 0) for kind in ("careful", "frame", "crops")}
        sizes = sorted(self.frame_sizes)
        smallest = float(np.median(self.smallest_seen)) if self.smallest_seen else None
        if smallest is None:
            why = (
                f"Nobody was found. The whole frame was searched at {c.careful_imgsz} px every "
                f"{c.recheck_every_s:g} s and at {c.min_imgsz} px in between."
            )
        else:
            need = self.frame_imgsz(smallest)
            why = (
                f"The smallest dancer was typically {smallest:.0f} px tall, with "
                f"{np.median(self.dancers_seen):.0f} dancers in view. "
                f"The model finds a person reliably at {c.person_px:g} px, so the whole frame would need a "
                f"{need} px input."
            )
            if frames["crops"]:
                why += (
                    f" Where crops cost fewer pixels, each dancer was found in a {c.crop_imgsz} px crop "
                    f"({c.crop_context:g}x their box) and the whole frame was searched at {c.careful_imgsz} px "
                    f"every {c.discover_every_s:g} s for newcomers."
                )
            if frames["frame"]:
                why += (
                    f" Elsewhere the whole frame was fed at {'/'.join(map(str, sizes))} px, with a search at "
                    f"{c.careful_imgsz} px every {c.recheck_every_s:g} s for smaller newcomers."
                )
        return {
            "frames": frames,
            "careful_imgsz": c.careful_imgsz,
            "frame_imgsz": sizes,
            "crop_imgsz": c.crop_imgsz,
            "smallest_dancer_px": None if smallest is None else round(smallest, 1),
            "why": why,
        }
