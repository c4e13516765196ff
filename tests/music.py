"""Music for tests: clicks at known times, and real H.264 + AAC MP4 files that carry them, written with
PyAV so the beats stage decodes them through the same path as an upload."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from worker.pipeline.decode import frame_times

RATE = 48000  # the AAC track's rate: the stage resamples it to 44.1 kHz


def click_audio(
    times: np.ndarray,
    seconds: float,
    *,
    amplitude: float = 0.5,
    noise: float = 0.01,
    seed: int = 0,
    base: np.ndarray | None = None,
) -> np.ndarray:
    """Mono float32 at RATE: a 1 kHz burst (5 ms decay) starting at each of `times`, over white noise.
    With `base`, the clicks are added to it instead."""
    if base is None:
        rng = np.random.default_rng(seed)
        out = (rng.normal(0.0, noise, round(seconds * RATE)) if noise else np.zeros(round(seconds * RATE))).astype(
            np.float32
        )
    else:
        out = base.copy()
    t = np.arange(round(0.03 * RATE)) / RATE
    burst = (amplitude * np.sin(2 * np.pi * 1000 * t) * np.exp(-t / 0.005)).astype(np.float32)
    for at in times:
        i = round(at * RATE)
        if 0 <= i < len(out):
            n = min(len(burst), len(out) - i)
            out[i : i + n] += burst[:n]
    return out


def plain_frame(t: float, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    image = np.full((size[1], size[0], 3), 60, np.uint8)
    x = int(t * 40) % (size[0] - 8)
    image[20:40, x : x + 8] = (200, 180, 50)
    return image


def write_music_video(
    path: Path,
    audio: np.ndarray | None,
    *,
    seconds: float,
    fps: float = 30.0,
    audio_start: float = 0.0,
    video_start: float = 0.0,
    draw: Callable[[float], np.ndarray] = plain_frame,
) -> np.ndarray:
    """An H.264 + AAC MP4. The video's frames are at video_start + i / fps and the audio's first sample at
    `audio_start` (absolute container times, so either stream can start later). Returns the frame times on
    the video's timeline as the pose stages see them (`decode.frame_times`)."""
    time_base = Fraction(1, 90000)
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=Fraction(round(fps * 1000), 1000))
        first = draw(0.0)
        video.width, video.height = first.shape[1], first.shape[0]
        video.pix_fmt = "yuv420p"
        video.time_base = time_base
        video.codec_context.time_base = time_base
        video.options = {"preset": "ultrafast", "bf": "0"}
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=RATE)
            sound.layout = "mono"
        for i in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(draw(i / fps), format="bgr24")
            frame.pts = round((video_start + i / fps) / time_base)
            frame.time_base = time_base
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None and audio is not None:
            offset = round(audio_start * RATE)
            for start in range(0, len(audio), 1024):
                chunk = np.ascontiguousarray(audio[start : start + 1024], dtype=np.float32).reshape(1, -1)
                aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                aframe.sample_rate = RATE
                aframe.pts = offset + start
                aframe.time_base = Fraction(1, RATE)
                container.mux(sound.encode(aframe))
            container.mux(sound.encode(None))
    return np.asarray(frame_times(path))


def nearest_offsets(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """For each true time, the signed distance (s) of the nearest found beat."""
    index = np.clip(np.searchsorted(found, truth), 1, len(found) - 1)
    left, right = found[index - 1], found[index]
    return np.where(np.abs(left - truth) <= np.abs(right - truth), left, right) - truth
