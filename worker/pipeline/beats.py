"""Listening stage: the tempo and the beat times of a video's audio, on the video's timeline.

The audio is decoded and resampled with PyAV to mono float32 at 44.1 kHz (the
only rate Essentia's rhythm algorithms are tuned for) and tracked with
Essentia's `RhythmExtractor2013`, `degara` method (docs/beats.md says why this
library and this method), in overlapping windows, with the first seconds
tracked backwards as well to get past the tracker's run-in. Beat times are then
moved onto the video's timeline: the pose stages count time from the first
video packet (`decode.frame_times`), while the audio may start earlier or later
(AAC priming, an edit list, a recorder that starts the microphone late). A
sample at absolute presentation time T lies at T - (first video pts) on that
timeline.

A video without usable audio is not an error: `find_beats` returns `Beats` with
`skipped` saying why (no audio track, undecodable, too short, silent, Essentia
not installed on this platform, no steady beat). Memory: the mono float32
audio (10.6 MB per minute) and Essentia's copy of one window of it at a time
(`TRACK_WINDOW_S`, `CONFIDENCE_WINDOW_S`); nothing is decoded twice.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import logging
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import av
import numpy as np

BEATS_VERSION = "1.0"  # beats.json's schema version (shared/schemas/beats.schema.json)

SAMPLE_RATE = 44100  # RhythmExtractor2013 "requires the sample rate of the input signal to be 44100 Hz"
MIN_TEMPO, MAX_TEMPO = 40, 208  # BPM range searched (Essentia's defaults; dance music sits well inside it)
# Shorter audio is skipped: the tracker takes 3-4 s to lock on from either end (see
# _settled_start), so on clicks of 5-8 s only 0-89 % of beats came within 30 ms (90-140 BPM),
# and from 10 s all of them at 120 and 140 BPM. The multifeature confidence also reads 0 on
# clicks under 6 s.
MIN_AUDIO_S = 10.0
# Digital silence, or a muted microphone: nothing reaches -60 dBFS. Room tone from a phone is
# louder than this; it is caught by the confidence check instead.
SILENCE_PEAK = 10 ** (-60 / 20)
# The degara tracker marks beats before the attack: by 6-17 ms for 1 kHz clicks, 2-11 ms for
# snare-like noise bursts, and within +-4 ms of it for kick-like low thumps (30 signals at 80-160 BPM,
# with and without noise; docs/beats.md, bench/bench_beats.py --accuracy). The median over all
# of them, 5 ms early, is added back to every beat; what is left depends on the sound (+-8 ms).
BEAT_CORRECTION_S = 0.005
# Confidence is the multifeature tracker's agreement of five beat trackers (Zapata et al. 2012),
# 0..5.32. Essentia's guide: [0, 1) very low, [1, 1.5] low, (1.5, 3.5] good (about 80 % of
# beats right), above 3.5 excellent. Under "good" the beats are not worth timing dancers
# against: skipped as no steady beat. Measured here (bench/bench_beats.py, docs/beats.md):
# clicks and drum patterns 3.3-4.6 at every length from 8 s; white noise 0.0-0.3 over 40-60 s,
# 0.5-0.9 over 20 s but 1.8-2.7 over 8-10 s; random percussive bursts 0.7-2.3 from 20 s. So
# the check reliably catches non-music only from about 20 s of audio; the value is reported.
MIN_CONFIDENCE = 1.5
MAX_AUDIO_S = 2 * 3600.0  # never decode more (the probe limits videos to 30 min by default)
AUDIO_PAST_VIDEO_S = 10.0  # audio this far past the last video frame is not decoded
TRACK_WINDOW_S = 120.0  # the tracker runs on windows this long (bounds Essentia's copy of the audio) ...
TRACK_OVERLAP_S = 20.0  # ... overlapping by this much (see _forward)
HEAD_S = 30.0  # how much of the start is tracked backwards as well (see _settled_start)
SETTLE_S = 4.0  # the tracker's run-in: beats this close to where a run starts are not trusted to align runs
CONFIDENCE_WINDOW_S = 60.0  # confidence per window of this length (bounds Essentia's memory), then averaged

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)  # eq=False: arrays do not compare as one truth value
class Beats:
    times: np.ndarray  # beat times in seconds on the video's timeline, ascending; empty when skipped
    tempo_bpm: float | None
    skipped: str | None  # why there are no beats; None when they were found
    confidence: float | None = None  # 0..5.32, see MIN_CONFIDENCE; None when not measured
    audio: dict[str, Any] | None = None  # codec, sample_rate, channels, duration, start_time (video timeline)
    tracker: dict[str, Any] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return self.skipped is None and len(self.times) > 0

    def to_dict(self, job_id: str) -> dict[str, Any]:
        """beats.json: valid against shared/schemas/beats.schema.json."""
        return {
            "schema_version": BEATS_VERSION,
            "job_id": job_id,
            "skipped": self.skipped,
            "tempo_bpm": None if self.tempo_bpm is None else round(float(self.tempo_bpm), 2),
            "beat_count": len(self.times),
            "beats": [round(float(t), 4) for t in self.times],
            "confidence": None if self.confidence is None else round(float(self.confidence), 3),
            "audio": self.audio,
            "tracker": self.tracker,
        }


@functools.cache
def _essentia() -> ModuleType | None:
    """essentia.standard, or None where it cannot be imported (no wheel, or one built for NumPy 1.x)."""
    try:
        import essentia

        # Before importing essentia.standard: it logs an INFO line about classifier models on import.
        essentia.log.infoActive = False
        essentia.log.warningActive = False
        import essentia.standard as standard
    except Exception as exc:  # ImportError, or NumPy's ABI refusal of a wheel built for NumPy 1.x
        log.warning("beat tracking is not available: essentia does not import (%s)", exc)
        return None
    return standard


# Configured Essentia algorithms, made once per thread and reused. Configuring one costs more than
# tracking 10 s of audio with it (RhythmExtractor2013 0.09-0.11 s, BeatTrackerMultiFeature 0.065 s,
# against 0.03 and 0.12 s to track 10 s): 0.25 s of a 10 s clip's 0.45 s of listening went to it.
# Each is reset after every use, which is what makes reuse safe: without a reset a
# BeatTrackerMultiFeature given a second signal raised "TempoTapMaxAgreement: tick values must be
# in ascending order" or found other beats; with it, the same beats as a fresh instance
# (tests/unit/test_beats.py). The reset also frees what it held of the last signal.
_configured = threading.local()


@contextlib.contextmanager
def _algorithm(standard: ModuleType, name: str, **parameters: Any) -> Iterator[Any]:
    """Essentia's `standard.<name>(**parameters)`, configured once per thread, reset after each use."""
    made: dict[tuple[Any, ...], Any] = _configured.__dict__.setdefault("algorithms", {})
    key = (id(standard), name, *sorted(parameters.items()))
    algorithm = made.get(key)
    if algorithm is None:
        algorithm = made[key] = getattr(standard, name)(**parameters)
    try:
        yield algorithm
    finally:
        algorithm.reset()


def _degara_tracker(standard: ModuleType) -> contextlib.AbstractContextManager[Any]:
    return _algorithm(standard, "RhythmExtractor2013", method="degara", minTempo=MIN_TEMPO, maxTempo=MAX_TEMPO)


def _confidence_tracker(standard: ModuleType) -> contextlib.AbstractContextManager[Any]:
    return _algorithm(standard, "BeatTrackerMultiFeature", minTempo=MIN_TEMPO, maxTempo=MAX_TEMPO)


def preload() -> None:
    """Import Essentia and configure its trackers now, in the thread that will run jobs: a worker
    calls this at start, so its first job does not wait for them (the import alone took 0.8-0.9 s
    of CPU here)."""
    standard = _essentia()
    if standard is None:
        return
    for tracker in (_degara_tracker, _confidence_tracker):
        with tracker(standard):
            pass


def tracker_info() -> dict[str, Any]:
    """What tracks the beats, for beats.json (version null where Essentia is not installed)."""
    try:
        version: str | None = importlib.metadata.version("essentia")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {
        "library": "essentia",
        "version": version,
        "algorithm": "RhythmExtractor2013",
        "method": "degara",
        "correction_ms": round(BEAT_CORRECTION_S * 1000, 1),
        "confidence_algorithm": "BeatTrackerMultiFeature",
    }


def _skip(reason: str, **fields: Any) -> Beats:
    return Beats(times=np.zeros(0), tempo_bpm=None, skipped=reason, tracker=tracker_info(), **fields)


class _Samples:
    """A growing float32 buffer: amortised appends without keeping a list of chunks and a concatenated copy."""

    def __init__(self, capacity: int) -> None:
        self.data = np.empty(max(capacity, SAMPLE_RATE), np.float32)
        self.size = 0

    def append(self, chunk: np.ndarray) -> None:
        end = self.size + len(chunk)
        if end > len(self.data):
            grown = np.empty(max(end, len(self.data) * 5 // 4), np.float32)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : end] = chunk
        self.size = end

    def array(self) -> np.ndarray:
        return self.data[: self.size]


@dataclass
class _Audio:
    samples: np.ndarray  # mono float32 at SAMPLE_RATE
    start: float  # time of samples[0] on the video's timeline, seconds
    info: dict[str, Any]


def _seconds(pts: int, time_base: Fraction) -> float:
    return float(pts * time_base)


def read_audio(path: Path) -> _Audio | str:
    """The first audio track as mono float32 at 44.1 kHz and where it starts on the video's timeline,
    or why not (a skip reason). Demuxes the file once: the video packets only for their timestamps.

    Audio more than `AUDIO_PAST_VIDEO_S` past the video is not decoded (no frame to time against it,
    and a crafted file cannot fill memory that way); a damaged tail keeps what decoded before it."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return "the video has no audio track"
            audio = container.streams.audio[0]
            video = container.streams.video[0] if container.streams.video else None
            rate = audio.codec_context.sample_rate or audio.rate or SAMPLE_RATE
            channels, codec = audio.codec_context.channels, audio.codec_context.name
            expected = float(audio.duration * audio.time_base) if audio.duration and audio.time_base else 0.0
            buffer = _Samples(int(min(expected, MAX_AUDIO_S) * SAMPLE_RATE) + SAMPLE_RATE)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            video_base = video.time_base if video is not None else None
            video_start: int | None = None  # earliest video pts (as decode.frame_times counts from)
            video_end = -np.inf  # latest video time seen, seconds
            audio_start: float | None = None
            audio_end = 0.0  # where the decoded audio so far ends, seconds (absolute)
            try:
                for packet in container.demux([audio] if video is None else [video, audio]):
                    if packet.stream is video:
                        if packet.size and packet.pts is not None and video_base:
                            video_start = packet.pts if video_start is None else min(video_start, packet.pts)
                            video_end = max(video_end, _seconds(packet.pts, video_base))
                        continue
                    for frame in packet.decode():
                        if not isinstance(frame, av.AudioFrame) or not frame.samples:
                            continue
                        if frame.pts is not None and frame.time_base is not None:
                            at = _seconds(frame.pts, frame.time_base)
                        else:  # no timestamp: right after the previous frame
                            at = audio_end if audio_start is not None else 0.0
                        if audio_start is None:
                            audio_start = audio_end = at
                        limit = video_end + AUDIO_PAST_VIDEO_S if video_start is not None else audio_start + MAX_AUDIO_S
                        if at > limit or at - audio_start > MAX_AUDIO_S:
                            continue
                        if at - audio_end > 0.001:  # a hole in the audio: keep later samples in their place
                            buffer.append(np.zeros(round((at - audio_end) * SAMPLE_RATE), np.float32))
                        audio_end = at + frame.samples / (frame.sample_rate or rate)
                        for out in resampler.resample(frame):
                            buffer.append(out.to_ndarray().reshape(-1))
            except av.FFmpegError as exc:
                if not buffer.size:
                    raise
                log.warning(
                    "audio of %s: keeping the %.1f s decoded before an error: %s", path, buffer.size / SAMPLE_RATE, exc
                )
            for out in resampler.resample(None):
                buffer.append(out.to_ndarray().reshape(-1))
    except (av.FFmpegError, ValueError, OSError) as exc:
        return f"the audio could not be decoded: {exc}"
    samples = buffer.array()
    if audio_start is None or samples.size == 0:
        return "the audio could not be decoded: the audio track holds no samples"
    offset = _seconds(video_start, video_base) if video_start is not None and video_base else 0.0
    start = audio_start - offset
    info = {
        "codec": codec,
        "sample_rate": int(rate),
        "channels": int(channels),
        "duration": round(samples.size / SAMPLE_RATE, 4),
        "start_time": round(start, 6),
    }
    return _Audio(samples=samples, start=start, info=info)


def _confidence(standard: ModuleType, samples: np.ndarray) -> float | None:
    """The multifeature tracker's confidence, averaged over windows of CONFIDENCE_WINDOW_S weighted by length;
    None when it fails on every window.

    Windows keep its memory bounded (it holds about twice the audio it is given); a short last
    window is merged into the one before it. The tracker is reset after each window (see
    `_algorithm`): one Essentia instance given a second, different signal without a reset raised
    "TempoTapMaxAgreement: tick values must be in ascending order" (essentia 2.1b6.dev1389)."""
    window = int(CONFIDENCE_WINDOW_S * SAMPLE_RATE)
    starts = list(range(0, max(len(samples) - window // 2, 1), window))
    total, weight = 0.0, 0
    for i, begin in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(samples)
        try:
            with _confidence_tracker(standard) as tracker:
                _, confidence = tracker(samples[begin:end])
        except RuntimeError as exc:
            log.warning("beat confidence of %.0f-%.0f s not measured: %s", begin / SAMPLE_RATE, end / SAMPLE_RATE, exc)
            continue
        total += float(confidence) * (end - begin)
        weight += end - begin
    return total / weight if weight else None


def _degara(standard: ModuleType, samples: np.ndarray) -> tuple[np.ndarray, float]:
    with _degara_tracker(standard) as extractor:
        bpm, ticks, _, _, _ = extractor(np.ascontiguousarray(samples, dtype=np.float32))
    return np.asarray(ticks, dtype=np.float64), float(bpm)


def _forward(standard: ModuleType, samples: np.ndarray) -> tuple[np.ndarray, float]:
    """(ticks, bpm) of the degara tracker over the whole audio, in windows of TRACK_WINDOW_S.

    Essentia copies its input, so tracking the whole audio at once would hold it twice; windows
    bound that copy. Consecutive windows overlap by TRACK_OVERLAP_S and are joined at a beat both
    found near the middle of the overlap, where the later window has settled (its run-in is at its
    start) and the earlier one has not reached its end."""
    # In whole blocks of the tracker's frame hop (1024 samples, its detection function upsampled x2),
    # so every window's beats fall on the same 11.6 ms grid as one run over the whole audio would give.
    block = 1024
    window = round(TRACK_WINDOW_S * SAMPLE_RATE / block) * block
    overlap = round(TRACK_OVERLAP_S * SAMPLE_RATE / block) * block
    if len(samples) <= window + overlap:
        return _degara(standard, samples)
    ticks, bpm = _degara(standard, samples[:window])
    start = window - overlap
    while True:
        end = min(start + window, len(samples))
        if len(samples) - end < overlap:  # the last window takes the rest
            end = len(samples)
        part, _ = _degara(standard, samples[start:end])
        ticks = _join(ticks, part + start / SAMPLE_RATE, start / SAMPLE_RATE, (start + overlap) / SAMPLE_RATE)
        if end == len(samples):
            return ticks, bpm
        start = end - overlap


def _join(earlier: np.ndarray, later: np.ndarray, start: float, end: float) -> np.ndarray:
    """Beats of two overlapping windows (overlap from `start` to `end` seconds) as one ascending series."""
    middle = (start + end) / 2
    if len(earlier) and len(later):
        candidates = earlier[(earlier >= start) & (earlier <= end)]
        if len(candidates):
            partners = later[np.abs(later[:, None] - candidates[None, :]).argmin(axis=0)]
            agree = np.abs(partners - candidates) < 0.025
            if agree.any():
                i = int(np.argmin(np.where(agree, np.abs(candidates - middle), np.inf)))
                return np.concatenate([earlier[earlier <= candidates[i]], later[later > partners[i]]])
    # No beat both found: cut in the middle, dropping a later beat that would double the last earlier one.
    head, tail = earlier[earlier < middle], later[later >= middle]
    if len(head) > 1 and len(tail) and tail[0] - head[-1] < 0.5 * float(np.median(np.diff(head))):
        tail = tail[1:]
    return np.concatenate([head, tail])


def _settled_start(standard: ModuleType, samples: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """`ticks` with the tracker's first, unsettled beats replaced by ones it finds once settled.

    The degara tracker needs a few seconds to lock on: on clicks its first 2-4 beats came up to 0.6 s
    off the clicks before it converged (its tempo analysis works on 6 s windows). Tracking the
    time-reversed head of the audio puts that run-in at the far end, so the reversed run is settled
    at the start. Reversed attacks become releases, which the tracker marks 7-25 ms later than the
    forward run does: the two runs are aligned by their median difference where both are settled
    (`SETTLE_S` in from either end of the head), and the reversed beats are used up to the first
    beats on which both runs agree. Without such agreement `ticks` are returned unchanged.
    """
    head = min(len(samples), int(HEAD_S * SAMPLE_RATE))
    duration = head / SAMPLE_RATE
    if duration < 2 * SETTLE_S + 2.0 or len(ticks) < 4:
        return ticks
    backward, _ = _degara(standard, samples[:head][::-1].copy())
    backward = np.sort(duration - backward)
    if len(backward) < 4:
        return ticks
    middle = ticks[(ticks >= SETTLE_S) & (ticks <= duration - SETTLE_S)]
    if len(middle) < 4:
        return ticks
    gaps = backward[np.abs(backward[:, None] - middle[None, :]).argmin(axis=0)] - middle
    paired = np.abs(gaps) < 0.06
    if paired.mean() < 0.8:
        return ticks
    backward = backward - float(np.median(gaps[paired]))
    agree = np.abs(backward[np.abs(backward[:, None] - ticks[None, :]).argmin(axis=0)] - ticks) < 0.025
    # The first forward beat that starts a run of four agreeing beats.
    runs = np.convolve(agree.astype(int), np.ones(4, int), mode="valid")
    settled = np.flatnonzero(runs == 4)
    if not settled.size or ticks[settled[0]] > duration - SETTLE_S:
        return ticks
    first = ticks[settled[0]]
    period = float(np.median(np.diff(ticks[settled[0] : settled[0] + 4])))
    before = backward[(backward < first - period / 2) & (backward >= 0)]
    return np.concatenate([before, ticks[settled[0] :]])


def track_beats(samples: np.ndarray) -> tuple[np.ndarray, float, float | None]:
    """(beat times in seconds from the first sample, tempo in BPM, confidence or None if it could not be
    measured) of mono float32 44.1 kHz audio.

    Raises RuntimeError where Essentia is not installed, and whatever Essentia raises."""
    standard = _essentia()
    if standard is None:
        raise RuntimeError("beat tracking is not available on this platform")
    ticks, bpm = _forward(standard, samples)
    ticks = _settled_start(standard, samples, ticks)
    if len(ticks) >= 2:
        # From the beats themselves: RhythmExtractor2013's own figure read 161.5 for clicks at
        # 160 BPM and 118.3 for kicks at 120. The median interval alone is a whole number of the
        # tracker's 11.6 ms frames (161.5 again), so: the mean of the intervals within 10 % of it
        # (a missed or doubled beat does not count; after a tempo change, the tempo held longer).
        intervals = np.diff(ticks)
        median = float(np.median(intervals))
        bpm = 60.0 / float(intervals[np.abs(intervals - median) <= 0.1 * median].mean())
    return ticks + BEAT_CORRECTION_S, bpm, _confidence(standard, samples)


def find_beats(path: Path) -> Beats:
    """The tempo and beat times of the video's first audio track, on the video's timeline.

    Never raises for anything about the audio: returns `Beats` with `skipped` saying why instead."""
    if _essentia() is None:
        try:
            with av.open(str(path)) as container:
                has_audio = bool(container.streams.audio)
        except (av.FFmpegError, OSError) as exc:
            return _skip(f"the audio could not be decoded: {exc}")
        return _skip("beat tracking is not available on this platform" if has_audio else "the video has no audio track")
    audio = read_audio(path)
    if isinstance(audio, str):
        return _skip(audio)
    samples = audio.samples
    if samples.size < MIN_AUDIO_S * SAMPLE_RATE:
        return _skip(f"the audio is shorter than {MIN_AUDIO_S:g} s", audio=audio.info)
    # Without temporary copies of the whole audio (np.abs would make one): max and min, NaN-propagating.
    peak = max(float(samples.max()), -float(samples.min()))
    if not math.isfinite(peak):
        np.nan_to_num(samples, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        peak = max(float(samples.max()), -float(samples.min()))
    if peak < SILENCE_PEAK:
        return _skip("the audio is silent", audio=audio.info)
    try:
        times, bpm, confidence = track_beats(samples)
    except RuntimeError as exc:  # Essentia reports bad input as RuntimeError
        return _skip(f"beat tracking failed: {exc}", audio=audio.info)
    except Exception as exc:  # beats are an extra: a fault here must not fail the dance analysis
        log.exception("beat tracking failed on %s", path)
        return _skip(f"beat tracking failed: {type(exc).__name__}", audio=audio.info)
    if len(times) < 2:
        return _skip("no steady beat was found in the audio", audio=audio.info, confidence=confidence)
    if confidence is not None and confidence < MIN_CONFIDENCE:
        return _skip(
            f"no steady beat was found in the audio (confidence {confidence:.2f} < {MIN_CONFIDENCE:g})",
            audio=audio.info,
            confidence=confidence,
        )
    return Beats(
        times=times + audio.start,
        tempo_bpm=bpm,
        skipped=None,
        confidence=confidence,
        audio=audio.info,
        tracker=tracker_info(),
    )
