"""Synthetic test videos that need no package photos: coloured shapes that move.

Enough for mock mode, storage and API tests; the real-model tests use
tests/clips.py, which pans over real photos of people.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.clips import write_clip


def moving_frames(count: int, size: tuple[int, int] = (320, 240)) -> list[np.ndarray]:
    width, height = size
    frames = []
    for i in range(count):
        image = np.full((height, width, 3), (40, 60, 80), np.uint8)
        x = (i * 5) % max(width - 40, 1)
        image[height // 4 : height // 2, x : x + 40] = (200, 180, 50)
        image[: height // 8, : width // 8] = (0, 0, 255)  # marks the top-left corner (rotation checks)
        frames.append(image)
    return frames


def make_clip(
    path: Path,
    *,
    seconds: float = 2.0,
    fps: float = 15.0,
    size: tuple[int, int] = (320, 240),
    audio: bool = False,
    rotation: int = 0,
    times: list[float] | None = None,
) -> Path:
    count = len(times) if times is not None else max(2, round(seconds * fps))
    write_clip(moving_frames(count, size), path, fps, audio=audio, rotation=rotation, times=times)
    return path


def truncated_copy(source: Path, dest: Path, keep: float = 0.5) -> Path:
    data = source.read_bytes()
    dest.write_bytes(data[: int(len(data) * keep)])
    return dest
