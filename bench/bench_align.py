"""How long comparing two 3-minute performances takes (worker/pipeline/align.py), so it stays seconds, not minutes.

    python bench/bench_align.py [--seconds 180] [--fps 30] [--repeat 3]

Two COCO-17 dancers from mock mode's kinematic model (worker/analysis/mock.py): the reference,
and an attempt filmed from elsewhere (moved, smaller) that speeds up and slows down by +-20%
around it, with 1 px of keypoint noise. Each is written as a poses.json document and read back
with `PoseSeries.from_track`, as a comparison job would. Timed, `--repeat` times each:
- read: JSON text -> `PoseSeries` for both dancers;
- align: `align(reference, attempt)` at its default band (a tenth of the longer video);
- align mirror=None: both orientations tried;
- group: `group_synchrony` of four dancers, 100 ms and 200 ms off for two of them.
Prints min / median / max seconds per step, the band, and the alignment's score and timing error.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.skeletons import COCO17
from worker.analysis.mock import DancerStyle, dancer_keypoints
from worker.pipeline.align import PoseSeries, align, group_synchrony

SIZE = (1280, 720)
STYLE = DancerStyle(center_x=0.5, height=0.6, tempo_hz=0.75, sway=0.05, phase=0.3, arm_lift=110.0)


def motion(times: np.ndarray) -> np.ndarray:
    return np.array([dancer_keypoints(STYLE, float(t), *SIZE) for t in times])


def warp(times: np.ndarray, depth: float = 0.2, hz: float = 0.05) -> np.ndarray:
    """The reference time shown at each attempt time: speed 1 +- depth."""
    return times + depth / (2 * math.pi * hz) * np.sin(2 * math.pi * hz * times)


def poses_json(times: np.ndarray, tracks: dict[int, np.ndarray]) -> str:
    def detection(f: int, points: np.ndarray) -> dict[str, Any]:
        keypoints = [[round(float(x), 2), round(float(y), 2), 0.9] for x, y in points]
        box = [*points.min(axis=0).round(2).tolist(), *points.max(axis=0).round(2).tolist()]
        return {
            "frame": f,
            "time": round(float(times[f]), 6),
            "box": box,
            "score": 0.9,
            "keypoints": keypoints,
            "keypoints_raw": keypoints,
            "interpolated": False,
        }

    doc = {
        "skeleton": COCO17.to_dict(),
        "frames": [{"index": i, "time": round(float(t), 6)} for i, t in enumerate(times)],
        "tracks": [
            {"track_id": tid, "detections": [detection(f, p) for f, p in enumerate(points)]}
            for tid, points in tracks.items()
        ],
    }
    return json.dumps(doc, separators=(",", ":"))


def timed(label: str, repeat: int, run: Callable[[], Any]) -> Any:
    seconds, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    runs = " ".join(f"{s:.2f}" for s in seconds)
    print(
        f"{label:<22} min {min(seconds):6.2f} s  median {statistics.median(seconds):6.2f} s  "
        f"max {max(seconds):6.2f} s   (runs: {runs})"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    times = np.arange(round(args.seconds * args.fps)) / args.fps
    reference = motion(times)
    attempt = (motion(warp(times)) - 640) * 0.7 + np.array([900.0, 420.0])
    attempt += rng.normal(0, 1.0, attempt.shape)
    text = poses_json(times, {1: reference, 2: attempt})
    print(f"{len(times)} frames x {len(COCO17.keypoints)} keypoints per dancer; poses.json {len(text) / 1e6:.1f} MB")

    def read() -> tuple[PoseSeries, PoseSeries]:
        doc = json.loads(text)
        return PoseSeries.from_track(doc, 1), PoseSeries.from_track(doc, 2)

    a, b = timed("read (json + series)", args.repeat, read)
    result = timed("align", args.repeat, lambda: align(a, b))
    either = timed("align mirror=None", args.repeat, lambda: align(a, b, mirror=None))
    truth = np.interp(result.times, warp(times), times)
    error = np.abs(result.matched_time - truth) * args.fps
    print(
        f"band +-{result.band_s:.1f} s ({round(result.band_s * args.fps)} frames); score {result.score:.3f}; "
        f"timing error median {np.median(error):.2f} / p95 {np.percentile(error, 95):.2f} frames; "
        f"mirror=None chose mirrored={either.mirrored} (other orientation {either.other_score:.3f})"
    )

    lags = (0.0, 0.1, 0.0, -0.2)  # seconds behind the choreography
    dancers = [
        PoseSeries(
            times,
            motion(times - lag) * (0.6 + 0.1 * n) + 150 * n + rng.normal(0, 1.0),
            a.scores,
            a.names,
            track_id=n + 1,
        )
        for n, lag in enumerate(lags)
    ]
    group = timed("group_synchrony (4)", args.repeat, lambda: group_synchrony(dancers))
    found = ", ".join(f"{d.track_id}: {1000 * d.lag_s:+.0f} ms" for d in group.dancers)
    print(
        f"group lags (true {', '.join(f'{1000 * lag:+.0f}' for lag in lags)} ms; each against the others' median): "
        f"{found}"
    )


if __name__ == "__main__":
    main()
