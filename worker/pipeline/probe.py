"""Probe stage: what the container says about the video, checked by decoding.

Reads every video packet's timestamp (demuxing only, no decoding, so it is
fast even for long videos) to get the true frame count, duration and whether
the frame rate varies, then decodes the first frame to prove the stream is
decodable and to read its rotation. Anything that is not a playable video
raises INVALID_VIDEO with a message a person understands.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import av

from shared.errors import ErrorCode, ServiceError
from worker.pipeline.records import VideoInfo


def _invalid(message: str, **details: object) -> ServiceError:
    return ServiceError(ErrorCode.INVALID_VIDEO, message, dict(details))


def probe(path: Path, *, max_seconds: float | None = None) -> VideoInfo:
    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise _invalid(
            "The file is not a video we can read (it may be corrupt, truncated or not a video at all).", reason=str(exc)
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

        pts: list[int] = []
        try:
            for packet in container.demux(stream):
                if packet.size and packet.pts is not None:
                    pts.append(packet.pts)
        except av.FFmpegError as exc:
            if not pts:
                raise _invalid("The video data could not be read.", reason=str(exc)) from exc
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
            raise _invalid("The video frames could not be decoded.", reason=str(exc)) from exc
        rotation = round(first.rotation or 0) % 360
        coded_w, coded_h = first.width, first.height

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
