"""Compare render: a reference and an attempt side by side, on the reference's timeline (issue 12).

Output frame k is the reference's frame k with that frame's own timestamp (pts and time base kept, as
render.py keeps them), so the output has the reference's frame count and duration, a client seeks it to
a worst moment's `start` (reference seconds) directly, and the reference's audio (the music the teacher
danced to) is copied along and stays in sync. Beside it is the attempt frame nearest to the time the
alignment pairs with that instant: `matched_time` interpolated at the reference frame's time, clamped to
the first/last matched time outside the aligned span (np.interp). Times are seconds from each video's
first frame, as decode.py and poses.json count them.

The alignment's path never goes back in time, so the attempt is decoded forward only, one frame of
look-ahead at a time: an attempt slower than the reference repeats frames, a faster one skips them, and
memory stays flat however long the videos are (bench/bench_compare_render.py). Only the frames shown are
converted and scaled.

Each half is scaled to `height` keeping its aspect (upright: a display-matrix rotation is applied) and
padded to an even width, so a landscape reference and a portrait phone attempt sit side by side. A mirrored
alignment shows the attempt flipped, and its label says so. Over the pair: the labels, the current
similarity as a number over the seam, and a bar along the bottom (gray "not seen" where the alignment has
no similarity). H.264 yuv420p MP4 with the moov atom first, as render.py writes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from shared.errors import ErrorCode, ServiceError, public_reason
from worker.pipeline.align import RATE_HZ, Alignment
from worker.pipeline.decode import to_bgr, upright
from worker.pipeline.probe import probe
from worker.pipeline.records import VideoInfo
from worker.pipeline.render import AudioCopy, encode_at, h264_stream

# 480 lines a half: a 16:9 pair is 1708x480 (0.8 megapixels, under one 1080p frame), so it encodes about as
# fast as the 720p annotated videos do and stays small, while skeletons, ids and the overlay stay readable.
DEFAULT_HEIGHT = 480
MIN_HEIGHT = 64

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_WHITE = (255, 255, 255)
_NOT_SEEN = (128, 128, 128)  # BGR gray: the bar and text where the alignment has no similarity
_BAR_EMPTY = (48, 48, 48)


def _unreadable(role: str, what: str, **details: object) -> ServiceError:
    return ServiceError(
        ErrorCode.INVALID_VIDEO,
        f"The {role} video cannot be read: {what}",
        {"video": role, **details},
    )


def _probe(path: Path, role: str) -> VideoInfo:
    """`probe`, with its INVALID_VIDEO naming which of the two videos is at fault."""
    try:
        return probe(path)
    except ServiceError as exc:
        if exc.code is not ErrorCode.INVALID_VIDEO:
            raise
        raise ServiceError(
            exc.code, f"The {role} video cannot be read. {exc.message}", {"video": role, **exc.details}
        ) from exc


def half_width(info: VideoInfo, height: int) -> tuple[int, int]:
    """(scaled width, padded even width) of a video's upright frame scaled to `height`, keeping its aspect."""
    width = max(2, round(info.width * height / info.height))
    return width, width + width % 2


def fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image` resized to `width` x `height`: halved with a Gaussian (pyrDown) while it is twice the height
    or more, then bilinear. Bilinear alone aliases past 2x; INTER_AREA does not, but takes 4.6 ms a frame for
    720p -> 480 lines (non-integer ratios) against 0.8 ms, and two of those a frame halved the render's speed."""
    while image.shape[0] >= 2 * height:
        image = cv2.pyrDown(image)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def similarity_color(similarity: float) -> tuple[int, int, int]:
    """BGR from red (similarity 0.4 and below: about a third of a torso length off) through yellow to green
    (0.9 and above: a tenth of a torso length off)."""
    f = min(max((similarity - 0.4) / 0.5, 0.0), 1.0)
    if f < 0.5:
        return 0, round(255 * 2 * f), 255
    return 0, 255, round(255 * (2 - 2 * f))


class _Timeline:
    """The alignment looked up at a reference frame's time: the attempt time and the similarity."""

    def __init__(self, alignment: Alignment) -> None:
        self.times = np.asarray(alignment.times, np.float64)
        self.matched = np.asarray(alignment.matched_time, np.float64)
        self.similarity = np.asarray(alignment.similarity, np.float64)
        if not len(self.times) or len(self.matched) != len(self.times) or len(self.similarity) != len(self.times):
            raise ValueError("the alignment needs times, matched_time and similarity of one (non-zero) length")
        step = float(np.median(np.diff(self.times))) if len(self.times) > 1 else 1 / RATE_HZ
        self.slack = step / 2 + 1e-6  # a frame within half a grid step of the span still has a similarity

    def attempt_time(self, t: float) -> float:
        return float(np.interp(t, self.times, self.matched))

    def similarity_at(self, t: float) -> float:
        """The similarity of the nearest grid point; NaN outside the aligned span."""
        i = int(np.searchsorted(self.times, t))
        nearest = min((j for j in (i - 1, i) if 0 <= j < len(self.times)), key=lambda j: abs(self.times[j] - t))
        return float(self.similarity[nearest]) if abs(self.times[nearest] - t) <= self.slack else math.nan


def _frame_time(frame: av.VideoFrame, start: int | None, index: int, fps: float) -> float:
    """Seconds from the first frame by the container's timestamps (decode.py's rule); by index without them."""
    if frame.pts is not None and start is not None and frame.time_base is not None:
        return float((frame.pts - start) * frame.time_base)
    return index / fps if fps > 0 else 0.0


class _Forward:
    """The attempt's frames, decoded forward only with one frame of look-ahead."""

    def __init__(self, container: av.container.InputContainer, info: VideoInfo, role: str) -> None:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        self._frames: Iterator[av.VideoFrame] = container.decode(stream)
        self._info, self._role = info, role
        self._start: int | None = None
        self._count = 0
        first = self._next()
        if first is None:
            raise _unreadable(role, "it holds no frames that decode.")
        self.index = 0
        self.current = first
        self.ahead = self._next()

    def _next(self) -> tuple[float, av.VideoFrame] | None:
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except av.FFmpegError as exc:
            raise _unreadable(self._role, "its frames stop decoding part way.", reason=public_reason(str(exc))) from exc
        if self._start is None:
            self._start = frame.pts
        time = _frame_time(frame, self._start, self._count, self._info.fps)
        self._count += 1
        return time, frame

    def nearest(self, t: float) -> tuple[int, av.VideoFrame]:
        """(index, frame) of the frame nearest to `t` at or after the current one (forward only: an earlier
        `t` than the last one keeps the current frame)."""
        while self.ahead is not None and abs(self.ahead[0] - t) < abs(self.current[0] - t):
            self.current, self.ahead = self.ahead, self._next()
            self.index += 1
        return self.index, self.current[1]


class _Overlay:
    """Labels, the similarity number and bar, sized for the output's height."""

    def __init__(self, height: int, width: int, seam: int, labels: tuple[str, str], lefts: tuple[int, int]) -> None:
        self.height, self.width, self.seam = height, width, seam
        self.labels, self.lefts = labels, lefts
        self.scale = max(0.45, 0.7 * height / 480)  # ~15 px capitals at 480 lines
        self.thickness = max(1, round(2 * height / 480))
        self.margin = max(4, round(8 * height / 480))
        self.bar = 2 * max(2, round(height / 120))  # 8 px at 480 lines; even, so chroma rows do not blur it

    def _text_box(self, image: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int]) -> None:
        """`text` with its top-left at (x, y) on a darkened box."""
        (tw, th), base = cv2.getTextSize(text, _FONT, self.scale, self.thickness)
        pad = self.margin // 2
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + tw + 2 * pad, image.shape[1]), min(y + th + base + 2 * pad, image.shape[0])
        if x1 > x0 and y1 > y0:
            image[y0:y1, x0:x1] = image[y0:y1, x0:x1] // 3
        cv2.putText(image, text, (x + pad, y + pad + th), _FONT, self.scale, color, self.thickness, cv2.LINE_AA)

    def draw(self, image: np.ndarray, similarity: float) -> None:
        for label, left in zip(self.labels, self.lefts, strict=True):
            self._text_box(image, label, left + self.margin, self.margin, _WHITE)
        seen = not math.isnan(similarity)
        text = f"Similarity {round(100 * similarity)}%" if seen else "Similarity: not seen"
        (tw, th), base = cv2.getTextSize(text, _FONT, self.scale, self.thickness)
        box_w, box_h = tw + self.margin, th + base + self.margin
        x = min(max(self.seam - box_w // 2, 0), self.width - box_w)
        self._text_box(image, text, x, self.height - self.bar - self.margin - box_h, _WHITE if seen else _NOT_SEEN)
        top = self.height - self.bar
        if seen:
            filled = round(self.width * min(max(similarity, 0.0), 1.0))
            image[top:, :filled] = similarity_color(similarity)
            image[top:, filled:] = _BAR_EMPTY
        else:
            image[top:] = _NOT_SEEN


def render_side_by_side(
    reference_video: Path,
    attempt_video: Path,
    alignment: Alignment,
    out_path: Path,
    *,
    height: int = DEFAULT_HEIGHT,
    preset: str = "veryfast",
    crf: int = 23,
    labels: tuple[str, str] = ("Reference", "Attempt"),
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the side-by-side comparison of `reference_video` and `attempt_video` (the two jobs' annotated.mp4)
    to `out_path`; returns the frames written (the reference's frame count). An unreadable input raises
    INVALID_VIDEO naming which one; nothing is left at `out_path` after a failure."""
    if height < MIN_HEIGHT or height % 2:
        raise ValueError(f"height must be an even number of at least {MIN_HEIGHT}, not {height}")
    timeline = _Timeline(alignment)
    reference = _probe(reference_video, "reference")
    attempt = _probe(attempt_video, "attempt")
    try:
        return _render(
            reference, attempt, timeline, alignment.mirrored, out_path, height, preset, crf, labels, progress
        )
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise


def _render(
    reference: VideoInfo,
    attempt: VideoInfo,
    timeline: _Timeline,
    mirrored: bool,
    out_path: Path,
    height: int,
    preset: str,
    crf: int,
    labels: tuple[str, str],
    progress: Callable[[int], None] | None,
) -> int:
    ref_w, ref_pad = half_width(reference, height)
    att_w, att_pad = half_width(attempt, height)
    width = ref_pad + att_pad
    names = (labels[0], f"{labels[1]} (mirrored)" if mirrored else labels[1])
    overlay = _Overlay(height, width, ref_pad, names, (0, ref_pad))

    def scaled(frame: av.VideoFrame, info: VideoInfo, w: int) -> np.ndarray:
        return fit(upright(to_bgr(frame), info.rotation), w, height)

    with (
        av.open(str(reference.path)) as source,
        av.open(str(attempt.path)) as attempt_source,
        av.open(str(out_path), "w", format="mp4", options={"movflags": "+faststart"}) as output,
    ):
        src_video = source.streams.video[0]
        src_video.thread_type = "AUTO"
        src_audio = source.streams.audio[0] if source.streams.audio else None
        time_base = src_video.time_base or Fraction(1, 90000)
        frames = _Forward(attempt_source, attempt, "attempt")

        out_video = h264_stream(output, reference.fps, (width, height), time_base, preset=preset, crf=crf)
        audio = AudioCopy(output, src_audio) if src_audio is not None else None

        shown: tuple[int, np.ndarray] | None = None  # the attempt half last drawn: repeated frames reuse it
        start: int | None = None
        index = 0
        for packet in _demux(source, [src_video] + ([src_audio] if src_audio is not None else [])):
            if packet.stream is src_audio and audio is not None:
                audio.mux(packet)
                continue
            for frame in _decode(packet):
                if start is None:
                    start = frame.pts
                t = _frame_time(frame, start, index, reference.fps)
                attempt_index, attempt_frame = frames.nearest(timeline.attempt_time(t))
                if shown is None or shown[0] != attempt_index:
                    half = scaled(attempt_frame, attempt, att_w)
                    shown = (attempt_index, cv2.flip(half, 1) if mirrored else half)
                canvas = np.zeros((height, width, 3), np.uint8)
                canvas[:, :ref_w] = scaled(frame, reference, ref_w)
                canvas[:, ref_pad : ref_pad + att_w] = shown[1]
                overlay.draw(canvas, timeline.similarity_at(t))
                # The reference's own timestamp: the output's timeline is the reference's, audio included.
                encode_at(output, out_video, canvas, frame.pts, time_base)
                index += 1
                if progress is not None:
                    progress(index)
        if index == 0:
            raise _unreadable("reference", "it holds no frames that decode.")
        output.mux(out_video.encode(None))
        if audio is not None:
            audio.flush()
        return index


def _demux(container: av.container.InputContainer, streams: list[av.stream.Stream]) -> Iterator[av.Packet]:
    try:
        yield from container.demux(*streams)
    except av.FFmpegError as exc:
        raise _unreadable("reference", "its data stops part way.", reason=public_reason(str(exc))) from exc


def _decode(packet: av.Packet) -> list[av.VideoFrame]:
    try:
        return [frame for frame in packet.decode() if isinstance(frame, av.VideoFrame)]
    except av.FFmpegError as exc:
        raise _unreadable("reference", "its frames stop decoding part way.", reason=public_reason(str(exc))) from exc
