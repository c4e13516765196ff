"""How well a smoother keeps motion: amplitude kept, lag and jitter, measured the same way in tests and benchmarks.

- amplitude kept and lag: a lock-in measurement at the motion's frequency
  (project the signal onto sin and cos over whole cycles), comparing the
  smoothed signal with the true one; noise averages out.
- jitter: the RMS of the error's second difference (frame-to-frame
  acceleration, the "Accel" error of SmoothNet, Zeng et al. 2022), which is
  what a viewer sees as wobble. The cut is raw jitter / smoothed jitter.
"""

from __future__ import annotations

import math

import numpy as np


def lock_in(signal: np.ndarray, times: np.ndarray, hz: float) -> tuple[float, float]:
    """(amplitude, phase in radians) of the `hz` component of `signal` (T,) sampled at `times`."""
    sin, cos = np.sin(2 * np.pi * hz * times), np.cos(2 * np.pi * hz * times)
    a = 2 * np.mean((signal - signal.mean()) * sin)
    b = 2 * np.mean((signal - signal.mean()) * cos)
    return math.hypot(a, b), math.atan2(b, a)


def amplitude_and_lag(smoothed: np.ndarray, truth: np.ndarray, times: np.ndarray, hz: float) -> tuple[float, float]:
    """(share of the true amplitude kept, lag in seconds: positive when `smoothed` comes late)."""
    amp, phase = lock_in(smoothed, times, hz)
    amp0, phase0 = lock_in(truth, times, hz)
    return amp / amp0, math.remainder(phase0 - phase, 2 * math.pi) / (2 * np.pi * hz)


def jitter(values: np.ndarray, truth: np.ndarray) -> float:
    """RMS frame-to-frame acceleration of the error, over axis 0 (frames)."""
    return float(np.sqrt(np.mean(np.diff(values - truth, 2, axis=0) ** 2)))


def whole_cycles(times: np.ndarray, hz: float, trim_s: float = 0.5) -> np.ndarray:
    """A mask of frames that spans whole cycles of `hz`, `trim_s` in from both ends (the ends of a run fit worse)."""
    inner = (times >= times[0] + trim_s) & (times <= times[-1] - trim_s)
    start = times[inner][0]
    cycles = math.floor((times[inner][-1] - start) * hz)
    return inner & (times < start + cycles / hz)
