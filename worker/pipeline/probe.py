"""Probe stage: what the container says about the video, checked by decoding.

Reads every video packet's timestamp (demuxing only, no decoding, so it is
fast even for long videos) to get the true frame count, duration and whether
the frame rate varies, then decodes the first frame to prove the stream is
decodable and to read its rotation. Anything that is not a playable video
raises INVALID_VIDEO with a message a person understands.

A frame over `max_pixels` is refused (VIDEO_TOO_LARGE) as soon as its size is
known: from the container header, before the packet scan and before any frame
is decoded (else from the first decoded frame). An 8K frame is ~100 MB as BGR
and every later stage holds several, so a worker that tried would run out of
memory or time. Error details carry no server path (the
scratch folder names the job): FFmpeg's messages go through `public_reason`.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import av

from shared.errors import ErrorCode, ServiceError, public_reason
from worker.pipeline.records import VideoInfo

# Common export sizes, largest first: the advice names the biggest one under the limit.
_EXPORT_SIZES = (("4K", 3840, 2160), ("1440p", 2560, 1440), ("1080p", 1920, 1080), ("720p", 1280, 720))


def _invalid(message: str, **details: object) -> ServiceError:
    return ServiceError(ErrorCode.INVALID_VIDEO, message, dict(details))


def check_frame_size(width: int, height: int, max_pixels: int | None) -> None:
    """Raise VIDEO_TOO_LARGE when a `width` x `height` frame is over `max_pixels`.

    Pixels, not sides: a portrait 2160x3840 phone video is as heavy as a
    landscape one, and rotation does not change the count.
    """
    if max_pixels is None or width * height <= max_pixels:
        return
    fits = next((name for name, w, h in _EXPORT_SIZES if w * h <= max_pixels), None)
    advice = f"Export it at {fits} or lower and upload it again." if fits else "Export it smaller and upload it again."
    raise ServiceError(
        ErrorCode.VIDEO_TOO_LARGE,
        f"The video is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels a frame); "
        f"the limit is {max_pixels / 1e6:.1f} megapixels a frame. {advice}",
        {"width": width, "height": height, "max_pixels": max_pixels},
    )


def probe(path: Path, *, max_seconds: float | None = None, max_pixels: int | None = None) -> VideoInfo:
    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise _invalid(
            "The file is not a video we can read (it may be corrupt, truncated or not a video at all).",
            reason=public_reason(str(exc)),
        ) from exc
    with container:
        if not container.streams.video:
            raise _invalid("The file has no video track.")
        stream = container.streams.video[0]
        has_audio = bool(container.streams.audio)
        codec = stream.codec_context.name
        time_base = stream.time_base
        if time_base is None:
            raise _invalid("The video track has no time base.")
        # The codec parameters (from the container header) give the size before
        # anything is decoded; 0 when the container does not say, then the first
        # decoded frame below decides.
        check_frame_size(stream.codec_context.width, stream.codec_context.height, max_pixels)

        pts: list[int] = []
        try:
            for packet in container.demux(stream):
                if packet.size and packet.pts is not None:
                    pts.append(packet.pts)
        except av.FFmpegError as exc:
            if not pts:
                raise _invalid("The video data could not be read.", reason=public_reason(str(exc))) from exc
            # A damaged tail: keep what demuxed; the decode check below decides.
        if not pts:
            raise _invalid("The video track holds no frames.")
        declared = stream.frames  # from the container's index, when it has one
        if declared and len(pts) < declared:
            raise _invalid(
                f"The video is incomplete: the file ends after {len(pts)} of its {declared} frames "
                "(was the upload cut short?).",
                frames_found=len(pts),
                frames_declared=declared,
            )

        container.seek(0)
        try:
            first = next(container.decode(stream))
        except (av.FFmpegError, StopIteration) as exc:
            raise _invalid("The video frames could not be decoded.", reason=public_reason(str(exc))) from exc
        rotation = round(first.rotation or 0) % 360
        coded_w, coded_h = first.width, first.height
        check_frame_size(coded_w, coded_h, max_pixels)

    pts.sort()
    deltas = [b - a for a, b in itertools.pairwise(pts)]
    frame_step = (sorted(deltas)[len(deltas) // 2] if deltas else 1) or 1
    start = pts[0]
    # Duration as a player sees it: up to the end of the last frame.
    duration = float((pts[-1] - start + frame_step) * time_base)
    frame_count = len(pts)
    fps = frame_count / duration if duration > 0 else float(stream.average_rate or 0)
    variable = bool(deltas) and (max(deltas) - min(deltas)) > max(1, frame_step // 10)
    if max_seconds is not None and duration > max_seconds:
        raise ServiceError(
            ErrorCode.VIDEO_TOO_LONG,
            f"The video is {duration:.0f} s long; the limit is {max_seconds:.0f} s.",
            {"duration": duration, "max_seconds": max_seconds},
        )
    upright_w, upright_h = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)
    return VideoInfo(
        path=path,
        width=upright_w,
        height=upright_h,
        rotation=rotation,
        fps=fps,
        duration=duration,
        frame_count=frame_count,
        variable_frame_rate=variable,
        has_audio=has_audio,
        codec=codec,
        size_bytes=path.stat().st_size,
    )
