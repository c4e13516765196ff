"""How long the side-by-side comparison video takes, and that its memory stays flat (worker/pipeline/compare_render.py).

    python bench/bench_compare_render.py [--seconds 180] [--repeat 3] [--heights 480 360 720] [--clips DIR]

Two 720p 30 fps H.264 clips of `--seconds` (slow pans over real photos shipped with ultralytics, or a
moving pattern without it; the reference with a music track), written once into a temp folder (or
`--clips DIR`, kept and reused). The alignment is the kind DTW gives: the attempt speeds up and slows down
by +-20 % around the reference and starts 0.4 s late; similarity varies, with a stretch where the dancer is
unseen. Each render runs in a fresh process, `--repeat` times per height, so its peak RSS is its own.
Prints per height: seconds (min / median / max), output frames per second, peak RSS, and the RSS after
10 % and after 100 % of the frames (equal when memory is flat). CPU seconds (user + system, the encoder's
threads included) change less than the wall clock when other work shares the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.pipeline.align import Alignment

SIZE = (1280, 720)
FPS = 30.0


def write_inputs(folder: Path, seconds: float) -> tuple[Path, Path]:
    import cv2

    from tests.clips import iter_pan_frames, package_photo, write_clip

    reference, attempt = folder / "reference.mp4", folder / "attempt.mp4"
    count = round(seconds * FPS)
    times = [i / FPS for i in range(count)]
    for path, photo, audio in ((reference, "zidane.jpg", True), (attempt, "bus.jpg", False)):
        if path.exists():
            continue
        found = package_photo(photo)
        image = cv2.imread(str(found)) if found else None
        if image is None:  # no ultralytics: a textured pattern instead of a photo
            yy, xx = np.mgrid[0:1080, 0:1920]
            image = np.stack([(xx // 7) % 256, (yy // 5) % 256, ((xx + yy) // 9) % 256], axis=2).astype(np.uint8)
        started = time.perf_counter()
        frames = iter_pan_frames(image, count, SIZE, zoom=0.3)
        write_clip(frames, path.with_suffix(".part.mp4"), FPS, audio=audio, times=times, preset="veryfast", crf=23)
        path.with_suffix(".part.mp4").rename(path)
        print(f"wrote {path.name}: {count} frames in {time.perf_counter() - started:.0f} s", flush=True)
    return reference, attempt


def synthetic_alignment(seconds: float) -> Alignment:
    times = np.arange(round(seconds * FPS)) / FPS
    hz, depth = 0.05, 0.2
    matched = np.clip(0.4 + times + depth / (2 * math.pi * hz) * np.sin(2 * math.pi * hz * times), 0, seconds - 1 / FPS)
    similarity = 0.65 + 0.3 * np.sin(times / 3)
    similarity[(times > seconds * 0.4) & (times < seconds * 0.45)] = np.nan
    return Alignment(
        mirrored=False,
        path=np.zeros((0, 2), np.int64),
        times=times,
        attempt_times=times,
        matched_time=np.maximum.accumulate(matched),
        similarity=similarity,
        keypoint_similarity=np.zeros((len(times), 0)),
        names=(),
        score=float(np.nanmean(similarity)),
        moments=[],
        band_s=18.0,
        cost=0.0,
        keypoint_weights=np.zeros(0),
        other_score=None,
    )


def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def one_run(reference: Path, attempt: Path, height: int, seconds: float, out: Path) -> None:
    """In a child process: render once, print one JSON line."""
    from worker.pipeline.compare_render import render_side_by_side

    alignment = synthetic_alignment(seconds)
    total = round(seconds * FPS)
    samples: dict[str, float] = {"before": rss_mib()}

    def progress(done: int) -> None:
        if done in (total // 10, total // 2, total):
            samples[f"at_{round(100 * done / total)}%"] = rss_mib()

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    frames = render_side_by_side(reference, attempt, alignment, out, height=height, progress=progress)
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    peak = usage.ru_maxrss / 1024  # KiB on Linux
    result = {"seconds": elapsed, "cpu_seconds": cpu, "frames": frames, "peak_mib": peak, "bytes": out.stat().st_size}
    print(json.dumps({**result, **samples}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--heights", type=int, nargs="+", default=[480, 360, 720])
    parser.add_argument("--clips", type=Path, help="folder to write the input clips into and reuse (default: temp)")
    parser.add_argument("--one", nargs=4, metavar=("REFERENCE", "ATTEMPT", "HEIGHT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        reference, attempt, height, out = args.one
        one_run(Path(reference), Path(attempt), int(height), args.seconds, Path(out))
        return

    with tempfile.TemporaryDirectory() as temp:
        folder = args.clips or Path(temp)
        folder.mkdir(parents=True, exist_ok=True)
        reference, attempt = write_inputs(folder, args.seconds)
        print(f"{args.seconds:.0f} s pair, {SIZE[0]}x{SIZE[1]} at {FPS:.0f} fps each; {args.repeat} runs per height")
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work slows the wall clock)")
        for height in args.heights:
            runs = []
            for _ in range(args.repeat):
                command = [sys.executable, __file__, "--seconds", str(args.seconds), "--one"]
                command += [str(reference), str(attempt), str(height), str(Path(temp) / "comparison.mp4")]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            seconds = [r["seconds"] for r in runs]
            cpu = [r["cpu_seconds"] for r in runs]
            frames = runs[0]["frames"]
            peaks = [r["peak_mib"] for r in runs]
            print(
                f"height {height:4d}: {min(seconds):6.1f} / {statistics.median(seconds):6.1f} / {max(seconds):6.1f} s "
                f"(min/median/max)  {frames / statistics.median(seconds):5.1f} fps  "
                f"CPU {min(cpu):.0f}-{max(cpu):.0f} s  {frames} frames  "
                f"{runs[0]['bytes'] / 2**20:5.1f} MiB out  peak RSS {min(peaks):.0f}-{max(peaks):.0f} MiB  "
                f"RSS before {runs[0]['before']:.0f}, at 10% {runs[0]['at_10%']:.0f}, at 50% {runs[0]['at_50%']:.0f}, "
                f"at 100% {runs[0]['at_100%']:.0f} MiB",
                flush=True,
            )


if __name__ == "__main__":
    main()
