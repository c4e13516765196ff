"""Build short, real-pixel test clips from photos that ship inside installed packages.

Every clip is H.264 (libx264, yuv420p) in MP4 written with PyAV, so tests
exercise the same decode path as a phone upload: container timestamps, an
optional display-matrix rotation, an optional variable frame rate and an
optional audio track.

Photos with known people counts:
- `ultralytics/assets/zidane.jpg`: 2 people (1280x720)
- `ultralytics/assets/bus.jpg`: 4 people (810x1080)
"""

from __future__ import annotations

import importlib.util
import itertools
import math
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

# People a person counts in each shipped photo (at least partly in view and detectable).
PEOPLE_IN_PHOTO = {"zidane.jpg": 2, "bus.jpg": 4}


def package_photo(name: str) -> Path | None:
    """Path of a photo shipped in ultralytics' assets (`zidane.jpg`, `bus.jpg`), or None if not installed."""
    for package in ("ultralytics",):
        spec = importlib.util.find_spec(package)
        if spec and spec.submodule_search_locations:
            for root in spec.submodule_search_locations:
                candidate = Path(root) / "assets" / name
                if candidate.is_file():
                    return candidate
    return None


def pan_frames(image: np.ndarray, count: int, size: tuple[int, int], zoom: float = 0.1) -> list[np.ndarray]:
    """`count` frames of a slow pan and zoom over `image` (see `iter_pan_frames`), as a list."""
    return list(iter_pan_frames(image, count, size, zoom))


def iter_pan_frames(image: np.ndarray, count: int, size: tuple[int, int], zoom: float = 0.1) -> Iterator[np.ndarray]:
    """`count` frames of a slow pan and zoom over `image`, each resized to `size` (width, height).

    The crop window keeps at least (1 - zoom) of the photo, so people near the
    edges stay in view.
    """
    out_w, out_h = size
    img_h, img_w = image.shape[:2]
    aspect = out_w / out_h
    # Largest window of the output aspect inside the photo.
    base_w, base_h = (img_w, img_w / aspect) if img_w / img_h <= aspect else (img_h * aspect, img_h)
    for i in range(count):
        t = i / max(count - 1, 1)
        scale = 1.0 - zoom * 0.5 * (1 - math.cos(math.pi * t))  # ease in/out
        w, h = base_w * scale, base_h * scale
        cx = img_w / 2 + (img_w - w) / 2 * 0.6 * math.sin(2 * math.pi * t)
        cy = img_h / 2 + (img_h - h) / 2 * 0.3 * math.sin(math.pi * t)
        x1, y1 = min(max(cx - w / 2, 0), img_w - w), min(max(cy - h / 2, 0), img_h - h)
        # Sub-pixel crop + resize in one affine warp: smooth motion, no jumps.
        sx, sy = out_w / w, out_h / h
        matrix = np.array([[sx, 0, -x1 * sx], [0, sy, -y1 * sy]], dtype=np.float64)
        yield cv2.warpAffine(image, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def store_rotated(upright: np.ndarray, rotation: int) -> np.ndarray:
    """The stored (coded) frame whose display rotation `rotation` (counter-clockwise degrees) shows `upright`."""
    turns = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(upright, k=-turns)) if turns else upright


def vfr_times(count: int, fps: float) -> list[float]:
    """Frame times of a variable-rate clip: steps alternate between 1x and 2x the nominal frame time."""
    times, t = [], 0.0
    for i in range(count):
        times.append(t)
        t += (1.0 if i % 3 else 2.0) / fps
    return times


def write_clip(
    frames: Iterable[np.ndarray],
    out_path: Path,
    fps: float,
    *,
    rotation: int = 0,
    audio: bool = False,
    times: list[float] | None = None,
    preset: str = "ultrafast",
    crf: int = 20,
) -> list[float]:
    """Encode upright BGR `frames` to H.264 MP4; returns the frame times written (seconds).

    `rotation` stores the frames turned and sets the display matrix so a player
    (and `worker.pipeline.decode`) shows them upright. `times` gives explicit
    presentation times (variable frame rate).
    """
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(frames, list | tuple):  # a generator: encode as it comes, memory stays flat
        stream_in = iter(frames)
        first = next(stream_in)
        frames = itertools.chain([first], stream_in)
    else:
        first = frames[0]
    if times is None:
        if not isinstance(frames, list | tuple):
            raise ValueError("times are required when frames is an iterator")
        times = [i / fps for i in range(len(frames))]
    time_base = Fraction(1, 90000)
    with av.open(str(out_path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stored0 = store_rotated(first, rotation)
        stream = container.add_stream("libx264", rate=Fraction(round(fps * 1000), 1000))
        stream.width, stream.height = stored0.shape[1], stored0.shape[0]
        stream.pix_fmt = "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        stream.options = {"preset": preset, "crf": str(crf), "bf": "0"}
        if rotation % 360:
            stream.set_display_rotation(rotation % 360)
        audio_stream = None
        if audio:
            audio_stream = container.add_stream("aac", rate=48000)
            audio_stream.layout = "mono"
        for image, t in zip(frames, times, strict=True):
            frame = av.VideoFrame.from_ndarray(store_rotated(image, rotation), format="bgr24")
            frame.pts = round(t / time_base)
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio_stream is not None:
            duration = times[-1] + 1.0 / fps
            rate, chunk = 48000, 1024
            total = int(duration * rate)
            for start in range(0, total, chunk):
                n = min(chunk, total - start)
                t = (np.arange(start, start + n) / rate).astype(np.float32)
                samples = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32).reshape(1, -1)
                aframe = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                aframe.sample_rate = rate
                aframe.pts = start
                aframe.time_base = Fraction(1, rate)
                container.mux(audio_stream.encode(aframe))
            container.mux(audio_stream.encode(None))
    return times


def make_pan_clip(
    image_path: Path,
    out_path: Path,
    seconds: float = 2.0,
    fps: float = 15.0,
    size: tuple[int, int] = (640, 360),
    rotation: int = 0,
    audio: bool = False,
    vfr: bool = False,
    zoom: float = 0.1,
    preset: str = "ultrafast",
) -> list[float]:
    """A slow pan/zoom over a photo as an H.264 MP4. Returns the frame times written.

    `size` is the upright (display) size; with `rotation` 90/270 the stored
    frames are size[1] x size[0] and the display matrix turns them upright.
    With `vfr`, frame steps alternate between 1x and 2x of 1/fps.
    """
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(image_path)
    count = max(2, round(seconds * fps))
    times = vfr_times(count, fps) if vfr else [i / fps for i in range(count)]
    frames = iter_pan_frames(image, count, size, zoom=zoom)
    return write_clip(frames, out_path, fps, rotation=rotation, audio=audio, times=times, preset=preset)
