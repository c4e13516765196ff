"""Joint geometry every pose consumer shares (metrics, timing, alignment): how sure a keypoint must be
to count, and the angle at a joint. Its own module so those stages can import it without importing
each other."""

from __future__ import annotations

import numpy as np

# A keypoint the model scored under this is treated as unseen: values built on it are null, not guessed.
MIN_SCORE = 0.3


def joint_angles(a: np.ndarray, vertex: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle at `vertex` between the segments to `a` and `b`, degrees 0..180, for (T, 2) arrays; NaN if degenerate."""
    u, v = a - vertex, b - vertex
    norm = np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.clip(np.sum(u * v, axis=-1) / norm, -1.0, 1.0)
    return np.degrees(np.arccos(np.where(norm > 0, cos, np.nan)))
