"""Render stage: every dancer's skeleton and id over the original frames.

Output is H.264 yuv420p in MP4 with the moov atom first (faststart), so a
browser plays it while it downloads. Each output frame keeps its source
frame's timestamp (variable frame rate stays correct, frame count and duration
match the source), and the audio track is copied, or re-encoded to AAC when
MP4 cannot hold its codec. Video and audio are read in one demux pass so the
muxer interleaves them without buffering the whole file.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from worker.pipeline.decode import from_bgr, to_bgr, upright
from worker.pipeline.records import Detections, PoseSequence, VideoInfo

# Codecs an MP4 can carry as they are; others are re-encoded to AAC.
_MP4_AUDIO = {"aac", "mp3", "alac", "opus", "ac3", "eac3"}
_KEYPOINT_MIN_SCORE = 0.3


def track_color(track_id: int) -> tuple[int, int, int]:
    """A distinct, stable BGR colour per track (golden-ratio hues)."""
    hue = (track_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_poses(image: np.ndarray, people: Detections, edges: tuple[tuple[int, int], ...]) -> None:
    """Draw in place: box corners, bones, joints and the track id."""
    height = image.shape[0]
    thickness = max(2, height // 240)
    for track_id, box, kp in zip(people.track_ids, people.boxes, people.keypoints, strict=True):
        color = track_color(int(track_id))
        for a, b in edges:
            if kp[a, 2] >= _KEYPOINT_MIN_SCORE and kp[b, 2] >= _KEYPOINT_MIN_SCORE:
                pa = (int(kp[a, 0]), int(kp[a, 1]))
                pb = (int(kp[b, 0]), int(kp[b, 1]))
                cv2.line(image, pa, pb, color, thickness, cv2.LINE_AA)
        for x, y, score in kp:
            if score >= _KEYPOINT_MIN_SCORE:
                cv2.circle(image, (int(x), int(y)), thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)
                cv2.circle(image, (int(x), int(y)), thickness + 1, color, 1, cv2.LINE_AA)
        x1, y1, x2, y2 = (int(v) for v in box)
        label = f"#{track_id}"
        scale = max(0.5, height / 900)
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        cv2.rectangle(image, (x1, max(y1 - th - 8, 0)), (x1 + tw + 8, max(y1, th + 8)), color, -1)
        cv2.putText(
            image,
            label,
            (x1 + 4, max(y1 - 4, th + 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            thickness,
            cv2.LINE_AA,
        )
        cv2.rectangle(image, (x1, y1), (x2, y2), color, 1, cv2.LINE_AA)


class AudioCopy:
    """A source's audio track into an MP4 being written: packets copied as they are when MP4 can hold
    the codec, else decoded and re-encoded to AAC. Feed it the source's audio packets in demux order
    (interleaved with the video, so the muxer need not buffer), then `flush` once after the last."""

    def __init__(self, output: av.container.OutputContainer, source: av.audio.stream.AudioStream) -> None:
        self._output = output
        self._resampler: av.AudioResampler | None = None
        if source.codec_context.name in _MP4_AUDIO:
            self._stream = output.add_stream_from_template(source)
        else:
            self._stream = output.add_stream("aac", rate=source.codec_context.sample_rate or 48000)
            self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=self._stream.rate)

    def mux(self, packet: av.Packet) -> None:
        if self._resampler is None:
            if packet.dts is None:  # the demuxer's empty flush packet
                return
            packet.stream = self._stream
            self._output.mux(packet)
            return
        for frame in packet.decode():
            for resampled in self._resampler.resample(frame):  # type: ignore[arg-type]
                self._output.mux(self._stream.encode(resampled))

    def flush(self) -> None:
        if self._resampler is not None:
            self._output.mux(self._stream.encode(None))


def h264_stream(
    output: av.container.OutputContainer,
    fps: float,
    size: tuple[int, int],
    time_base: Fraction,
    *,
    preset: str,
    crf: int,
) -> av.VideoStream:
    """The H.264 yuv420p video stream every rendered video has (`size` even), on the source's `time_base`
    so each output frame can keep its source frame's timestamp."""
    rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(30)
    stream = output.add_stream("libx264", rate=rate)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.time_base = time_base
    stream.codec_context.time_base = time_base
    stream.options = {"preset": preset, "crf": str(crf)}
    stream.thread_type = "AUTO"
    return stream


def encode_at(
    output: av.container.OutputContainer,
    stream: av.VideoStream,
    image: np.ndarray,
    pts: int | None,
    time_base: Fraction,
) -> None:
    """Encode a BGR image as the frame at `pts` (a source frame's own timestamp) and mux it."""
    out_frame = from_bgr(image)
    out_frame.pts = pts
    out_frame.time_base = time_base
    output.mux(stream.encode(out_frame))


def render(
    video: VideoInfo,
    poses: PoseSequence,
    out_path: Path,
    *,
    preset: str = "veryfast",
    crf: int = 23,
    progress: Callable[[int], None] | None = None,
) -> None:
    people_by_frame = poses.frames()
    source = av.open(str(video.path))
    output = av.open(str(out_path), "w", format="mp4", options={"movflags": "+faststart"})
    try:
        src_video = source.streams.video[0]
        src_video.thread_type = "AUTO"
        src_audio = source.streams.audio[0] if source.streams.audio else None
        time_base = src_video.time_base or Fraction(1, 90000)

        # yuv420p needs even sizes
        size = (video.width - video.width % 2, video.height - video.height % 2)
        out_video = h264_stream(output, video.fps, size, time_base, preset=preset, crf=crf)

        audio = AudioCopy(output, src_audio) if src_audio is not None else None

        streams = [src_video] + ([src_audio] if src_audio is not None else [])
        index = 0
        for packet in source.demux(*streams):
            if packet.stream is src_audio and audio is not None:
                audio.mux(packet)
                continue
            for frame in packet.decode():
                if not isinstance(frame, av.VideoFrame):
                    continue
                image = upright(to_bgr(frame), video.rotation)
                image = image[: out_video.height, : out_video.width]
                people = next(people_by_frame, None)
                if people is not None:
                    draw_poses(image, people, poses.skeleton.edges)
                # The source's own timestamp: keeps variable frame rates and audio sync exact.
                encode_at(output, out_video, np.ascontiguousarray(image), frame.pts, time_base)
                index += 1
                if progress is not None:
                    progress(index)
        output.mux(out_video.encode(None))
        if audio is not None:
            audio.flush()
    finally:
        output.close()
        source.close()
