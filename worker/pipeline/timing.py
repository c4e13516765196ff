"""Timing on the music: a dancer's movement accents and how far each falls from the nearest beat.

An accent is a peak of whole-body speed: the mean over the keypoints the model is sure of of
their speed, in body heights per second (so near and far dancers compare), smoothed a little.
Peaks count when they stand out from the dancer's own movement (prominence against the spread
of their speed, and an absolute floor that keypoint jitter does not reach) and are at least
`MIN_SPACING_S` apart. Peak times are refined between frames with a parabola, so offsets are
finer than a frame.

Each accent is matched to its nearest beat; the signed offset (negative = before the beat,
early) lies within half a beat period. Accents in the half of the beat cycle nearer the
off-beat ("and") are counted as off the beat: their offsets say where the dancer is in the
bar, not how early or late they are, so the offset statistics and the tendency use only the
accents nearer a beat. Accents more than half a period outside the beats are not counted.

numpy only: peak finding and prominence are written here (scipy is not a dependency).
"""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.pipeline.angles import MIN_SCORE

if TYPE_CHECKING:
    from worker.pipeline.beats import Beats
    from worker.pipeline.records import Detections

# "On the beat" within +-70 ms: the window beat-tracking evaluation uses to call a beat correct
# (MIREX / mir_eval F-measure), about where people stop seeing sound and motion as together
# (audio-visual asynchrony becomes noticeable from ~45 ms audio-first to ~100 ms motion-first),
# and +-2 frames at 30 fps, so it does not hinge on one frame.
TOLERANCE_S = 0.07
# A tendency is only called early or late when the median offset of the accents near a beat is
# past 20 ms: above what the measurement itself can be off by (the tracker's remaining bias of
# +-8 ms by sound, sub-frame peak timing at 30 fps), and within the 20-60 ms that people who tap
# along typically anticipate the beat by (the "negative mean asynchrony" of tapping studies).
TENDENCY_S = 0.020
# ...and when the median is also this many of its standard errors (1.25 sd / sqrt(n)) from the beat:
# a small dancer's single accents spread by 40-70 ms on real keypoints (a wide shot), so a median
# of +29 ms over 23 of them is no evidence of being late, while +98 ms with a 14 ms spread is.
TENDENCY_STANDARD_ERRORS = 2.0
# A verdict needs this many accents within the beats: two or three clear moves in a whole video say
# nothing about a dancer's timing (with BlazePose on a 113 px dancer in a wide shot, the keypoints'
# jitter hid all but 2 of 23 bounces, which then read "on the beat, 100 %").
MIN_ACCENTS = 4
MIN_SPACING_S = 0.2  # two accents closer than this are one movement (5 per second is already very fast)
MAX_GAP_S = 0.25  # frames further apart than this (a track lost for a while): no speed across the gap
MIN_SEEN_SHARE = 0.5  # whole-body speed needs at least half the keypoints seen in both frames
SMOOTHING = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16  # binomial, sd 1 frame (33 ms at 30 fps)
# Prominence needed, the largest of: a share of the dancer's own speed spread (10th to 90th
# percentile), so only the marked movements of a busy dancer count; NOISE_FACTOR times the speed's
# frame-to-frame noise (estimated from its second differences, which smooth movement hardly has),
# since keypoint jitter alone makes peaks up to 3.0-3.6 times that noise over 20 s (measured with
# white jitter of 0.5-3 px); and an absolute floor of 0.05 body heights per second (one wrist moving
# at 0.85 body heights per second, a small gesture) for tracks with almost no noise.
PROMINENCE_SHARE = 0.3
NOISE_FACTOR = 3.5
MIN_PROMINENCE = 0.05
PROMINENCE_WINDOW_S = 1.0  # prominence looks this far either side of a peak (scipy's wlen)


def whole_body_speed(times: np.ndarray, keypoints: np.ndarray, heights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(midpoint times (T-1,), speed (T-1,)) in body heights per second between consecutive frames;
    NaN across gaps, bad heights and frames where too few keypoints are seen in both."""
    times = np.asarray(times, dtype=np.float64)
    kp = np.asarray(keypoints, dtype=np.float64)
    if len(times) < 2:
        return np.zeros(0), np.zeros(0)
    sure = kp[..., 2] >= MIN_SCORE
    both = sure[1:] & sure[:-1]  # (T-1, K)
    dt = np.diff(times)
    height = (np.asarray(heights, dtype=np.float64)[1:] + np.asarray(heights, dtype=np.float64)[:-1]) / 2
    step = np.linalg.norm(kp[1:, :, :2] - kp[:-1, :, :2], axis=-1)  # (T-1, K) pixels
    seen = both.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_step = np.where(seen > 0, np.where(both, step, 0.0).sum(axis=1) / seen, np.nan)
        speed = mean_step / dt / height
    usable = (dt > 0) & (dt <= MAX_GAP_S) & (height > 0) & (seen >= MIN_SEEN_SHARE * kp.shape[1])
    return (times[1:] + times[:-1]) / 2, np.where(usable & np.isfinite(speed), speed, np.nan)


def _smooth(values: np.ndarray) -> np.ndarray:
    """Binomial smoothing that skips NaN (gaps stay NaN, edges use the weights that exist)."""
    known = np.isfinite(values)
    pad = len(SMOOTHING) // 2
    num = np.convolve(np.pad(np.where(known, values, 0.0), pad), SMOOTHING, mode="valid")
    den = np.convolve(np.pad(known.astype(float), pad), SMOOTHING, mode="valid")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(known, num / den, np.nan)


def _noise(speed: np.ndarray) -> float:
    """The standard deviation of the frame-to-frame noise in `speed`: the robust spread (MAD) of its second
    differences, which is sqrt(6) times the noise's for white noise."""
    second = np.diff(speed, 2)
    second = second[np.isfinite(second)]
    if second.size == 0:
        return 0.0
    return float(np.median(np.abs(second - np.median(second)))) / 0.6745 / math.sqrt(6)


def _prominence(values: np.ndarray, times: np.ndarray, i: int) -> float:
    """How far the peak at `i` stands above the higher of the lowest points between it and the nearest
    higher value (or a gap, or PROMINENCE_WINDOW_S) on either side, as scipy.signal.peak_prominences."""
    bases = []
    for direction in (-1, 1):
        j, low = i, values[i]
        while True:
            k = j + direction
            if k < 0 or k >= len(values) or not math.isfinite(values[k]) or values[k] > values[i]:
                break
            if abs(times[k] - times[i]) > PROMINENCE_WINDOW_S:
                break
            j, low = k, min(low, values[k])
        bases.append(low)
    return float(values[i] - max(bases))


def _vertex(t: np.ndarray, y: np.ndarray) -> float:
    """Time of the top of the parabola through three points (unevenly spaced allowed), kept between them."""
    (t0, t1, t2), (y0, y1, y2) = t, y
    denom = (t0 - t1) * (t0 - t2) * (t1 - t2)
    a = (t2 * (y1 - y0) + t1 * (y0 - y2) + t0 * (y2 - y1)) / denom
    b = (t2 * t2 * (y0 - y1) + t1 * t1 * (y2 - y0) + t0 * t0 * (y1 - y2)) / denom
    if a >= 0:  # not a maximum (flat top): the sample itself
        return float(t1)
    return float(min(max(-b / (2 * a), t0), t2))


def accent_times(times: np.ndarray, keypoints: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """Movement accents of one dancer: peaks of whole-body speed, in seconds, ascending.

    times (T,) seconds of the dancer's frames (gaps allowed), keypoints (T, K, 3) x, y, score,
    heights (T,) body height in px. Keypoints scored under MIN_SCORE are ignored."""
    mid, speed = whole_body_speed(times, keypoints, heights)
    smooth = _smooth(speed)
    known = np.isfinite(smooth)
    if known.sum() < 3:
        return np.zeros(0)
    low, high = np.percentile(smooth[known], [10, 90])
    needed = max(PROMINENCE_SHARE * (high - low), NOISE_FACTOR * _noise(speed), MIN_PROMINENCE)
    inner = np.arange(1, len(smooth) - 1)
    left, centre, right = smooth[inner - 1], smooth[inner], smooth[inner + 1]
    with np.errstate(invalid="ignore"):
        candidates = inner[(centre > left) & (centre >= right)]  # NaN neighbours compare False: no peak at a gap
    peaks = [int(i) for i in candidates if _prominence(smooth, mid, int(i)) >= needed]
    # Closer than MIN_SPACING_S: keep the higher peak (as scipy's find_peaks `distance`).
    kept: list[float] = []  # times of the peaks kept so far, sorted
    chosen: list[int] = []
    for i in sorted(peaks, key=lambda i: -smooth[i]):
        at = bisect.bisect(kept, mid[i])
        if (at == 0 or mid[i] - kept[at - 1] >= MIN_SPACING_S) and (
            at == len(kept) or kept[at] - mid[i] >= MIN_SPACING_S
        ):
            kept.insert(at, float(mid[i]))
            chosen.append(i)
    return np.array(sorted(_vertex(mid[i - 1 : i + 2], smooth[i - 1 : i + 2]) for i in chosen), dtype=np.float64)


def _stats_ms(offsets: np.ndarray) -> dict[str, float | None]:
    if offsets.size == 0:
        return {"mean": None, "median": None, "std": None}
    return {
        "mean": round(float(offsets.mean()) * 1000, 1),
        "median": round(float(np.median(offsets)) * 1000, 1),
        "std": round(float(offsets.std()) * 1000, 1),
    }


def on_beat(accents: np.ndarray, beats: np.ndarray, tolerance_s: float = TOLERANCE_S) -> dict[str, Any] | None:
    """How a dancer's accents fall on the beats; None when there are no beats (under two) or fewer than
    MIN_ACCENTS accents within half a beat of them.

    offsets are signed, negative before the beat (early), wrapped to the nearest beat (within half the
    local beat period). `on_beat_share` is the share of accents within `tolerance_s` of a beat and
    `off_beat_share` of those nearer the half-beat than the beat (more than a quarter period away);
    `offset_ms` and `tendency` are over the accents nearer a beat (None when there are none)."""
    beats = np.sort(np.asarray(beats, dtype=np.float64))
    accents = np.sort(np.asarray(accents, dtype=np.float64))
    if len(beats) < 2 or len(accents) == 0:
        return None
    periods = np.diff(beats)
    inside = (accents >= beats[0] - periods[0] / 2) & (accents <= beats[-1] + periods[-1] / 2)
    accents = accents[inside]
    if len(accents) < MIN_ACCENTS:
        return None
    # The beats either side of each accent, and the period between them (the end periods outside).
    after = np.clip(np.searchsorted(beats, accents), 1, len(beats) - 1)
    before = after - 1
    period = periods[before]
    to_before, to_after = accents - beats[before], accents - beats[after]
    offsets = np.where(np.abs(to_before) <= np.abs(to_after), to_before, to_after)
    on = np.abs(offsets) <= tolerance_s
    near = np.abs(offsets) <= period / 4
    near_offsets = offsets[near]
    stats = _stats_ms(near_offsets)
    tendency: str | None = None
    if near_offsets.size:
        median = float(np.median(near_offsets))
        standard_error = 1.2533 * float(near_offsets.std()) / math.sqrt(near_offsets.size)
        threshold = max(TENDENCY_S, TENDENCY_STANDARD_ERRORS * standard_error)
        tendency = "late" if median > threshold else "early" if median < -threshold else "on the beat"
    return {
        "accents": len(accents),
        "tolerance_ms": round(tolerance_s * 1000, 1),
        "on_beat_share": round(float(on.mean()), 3),
        "off_beat_share": round(float((~near).mean()), 3),
        "near_beat": int(near.sum()),
        "offset_ms": stats,
        "tendency": tendency,
        "accent_times": [round(float(t), 3) for t in accents],
        "offsets_ms": [round(float(o) * 1000, 1) for o in offsets],
    }


def dancer_timing(times: np.ndarray, track: Detections, beats: Beats) -> dict[str, Any] | None:
    """One dancer's accents against the music's beats; None when the beats were skipped."""
    if not beats.found:
        return None
    return on_beat(accent_times(times, track.keypoints, track.heights), beats.times)
