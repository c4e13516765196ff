"""Decode stage: frames one at a time, upright, with the container's timestamps.

A generator, so memory stays flat however long the video is. Frames come out
as BGR uint8 arrays (the layout OpenCV drawing and the models expect).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np


@dataclass
class DecodedFrame:
    index: int
    time: float  # seconds from the first frame, from the container's pts
    pts: int | None
    image: np.ndarray  # (H, W, 3) BGR, upright


def to_bgr(frame: av.VideoFrame) -> np.ndarray:
    """BGR pixels of a decoded frame.

    For the usual yuv420p, OpenCV's SIMD conversion is about 4x faster than
    FFmpeg's single-threaded swscale that `to_ndarray(format="bgr24")` uses.
    """
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(format="bgr24")


def from_bgr(image: np.ndarray) -> av.VideoFrame:
    """A yuv420p frame for the H.264 encoder (OpenCV's conversion, as in `to_bgr`)."""
    height, width = image.shape[:2]
    if width % 2 == 0 and height % 2 == 0:
        yuv = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
        return av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    return av.VideoFrame.from_ndarray(image, format="bgr24")


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply the display rotation (counter-clockwise degrees, as PyAV and ffprobe report it)."""
    turns = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k=turns)) if turns else image


def frame_times(path: Path) -> list[float]:
    """Timestamps of every frame in presentation order, without decoding pixels."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = sorted(p.pts for p in container.demux(stream) if p.size and p.pts is not None)
        base = stream.time_base
    if not pts or base is None:
        return []
    return [float((p - pts[0]) * base) for p in pts]


def decode_frames(path: Path, rotation: int, *, threads: int = 0) -> Iterator[DecodedFrame]:
    container = av.open(str(path))
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        start: int | None = None
        for index, frame in enumerate(container.decode(stream)):
            if start is None:
                start = frame.pts or 0
            time = float((frame.pts - start) * frame.time_base) if frame.pts is not None and frame.time_base else 0.0
            image = upright(to_bgr(frame), rotation)
            yield DecodedFrame(index=index, time=max(time, 0.0), pts=frame.pts, image=image)
    finally:
        container.close()
