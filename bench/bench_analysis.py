"""Speed and quality of the real analysis, side by side: recall next to fps, per clip and profile.

    python bench/bench_analysis.py [--seconds 20] [--repeat 3] [--profiles fast,accurate] [--rss-seconds 60]

Two 1280x720 30 fps clips, built once and cached in bench/out/:
- close-up: a pan over zidane.jpg (two people filling the frame), with audio;
- wide: a stage shot of six dancers 84-200 px tall (tests/stage.py), each
  bouncing on a 3 Hz accent of 5% of their height; their true boxes are known.

For each clip, in separate processes (so peak RSS is per run), `--repeat` times:
- every profile through the worker's own stages (analyze = decode + find + pose,
  smooth, metrics, render, export): fps per stage and overall;
- the baseline: decode + Ultralytics `YOLO('yolo11n-pose.pt').track(frame,
  persist=True, imgsz=1280)` (torch, ByteTrack), a plain careful script.

Quality: recall against the reference (Ultralytics' predictor at imgsz 1280,
conf 0.25: every box it finds, matched at IoU >= 0.5, frame by frame; computed
once and cached) and, on the wide shot, against the true boxes. On the wide
shot the smoothing is measured on real keypoints against the known 3 Hz
bounce: amplitude kept, lag and jitter cut (tests/motion.py). Figures are
the median of the runs with their min-max spread, next to their goals.
`--rss-seconds` also runs the fast profile on a longer close-up, to show that
peak RSS does not grow with the video's length.

Needs requirements-gpu.txt and `python -m worker.models.prepare`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))
SIZE, FPS = (1280, 720), 30.0


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it is not inherited across fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM in /proc/self/status")


class Timed:
    """Wraps a callable and adds up the time spent in it."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.seconds = fn, 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fn, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


# --------------------------------------------------------------------------- clips and the reference


def build_clip(kind: str, seconds: float) -> Path:
    out = OUT / f"{kind}_{SIZE[0]}x{SIZE[1]}_{FPS:g}fps_{seconds:g}s.mp4"
    if out.is_file():
        return out
    OUT.mkdir(parents=True, exist_ok=True)
    if kind == "closeup":
        from tests.clips import make_pan_clip, package_photo

        photo = package_photo("zidane.jpg")
        if photo is None:
            sys.exit("zidane.jpg not found: pip install -r requirements-gpu.txt")
        make_pan_clip(photo, out, seconds=seconds, fps=FPS, size=SIZE, audio=True, preset="veryfast")
    else:
        from tests.stage import stage_clip, wide_shot_dancers

        clip = stage_clip(out, wide_shot_dancers(SIZE), seconds=seconds, fps=FPS, size=SIZE, audio=True)
        np.save(truth_path(out), clip.truth)
    return out


def truth_path(clip: Path) -> Path:
    return clip.with_suffix(".truth.npy")


def reference_boxes(clip: Path) -> list[np.ndarray]:
    """What Ultralytics' own predictor finds at imgsz 1280, conf 0.25, frame by frame (cached)."""
    cache = clip.with_suffix(".reference.npz")
    if not cache.is_file():
        os.environ.setdefault("YOLO_OFFLINE", "1")
        from ultralytics import YOLO

        from worker.models.catalog import YOLO_POSE_PT, models_dir
        from worker.pipeline.decode import decode_frames

        model = YOLO(str(models_dir() / YOLO_POSE_PT.name), task="pose")
        boxes = [
            model.predict(f.image, imgsz=1280, conf=0.25, device="cpu", verbose=False)[0].boxes.xyxy.cpu().numpy()
            for f in decode_frames(clip, 0)
        ]
        np.savez(cache, *boxes)
    with np.load(cache) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def quality(clip: Path, boxes: list[np.ndarray]) -> dict[str, float]:
    """Recall of `boxes` (what was found, frame by frame) against the reference and, where known, the truth."""
    from tests.stage import recall

    out = {"recall_ref": recall(reference_boxes(clip), boxes)}
    if truth_path(clip).is_file():
        truth = np.load(truth_path(clip))
        out["recall_truth"] = recall([t[~np.isnan(t).any(axis=1)] for t in truth], boxes)
    return out


# --------------------------------------------------------------------------- runs (each in its own process)


def run_profile(clip: Path, profile_name: str) -> dict[str, Any]:
    from shared.profiles import Profile
    from shared.settings import Settings
    from worker.analysis.real import RealAnalyzer
    from worker.pipeline import decode, export, metrics, render, smooth
    from worker.pipeline.probe import probe

    settings = Settings(device="cpu")
    started = time.perf_counter()
    analyzer = RealAnalyzer(settings)
    load_s = time.perf_counter() - started
    video = probe(clip)
    n = video.frame_count

    started = time.perf_counter()
    for _ in decode.decode_frames(video.path, video.rotation):
        pass
    decode_s = time.perf_counter() - started

    # Time the model calls inside analyze without changing it.
    detector = analyzer.detector = Timed(analyzer.detector)
    pose_factory, pose_timers = analyzer.pose_estimator, []

    def timed_pose(profile: Profile) -> Timed:
        pose_timers.append(Timed(pose_factory(profile)))
        return pose_timers[-1]

    analyzer.pose_estimator = timed_pose  # type: ignore[method-assign]
    started = time.perf_counter()
    seq = analyzer.analyze(video, Profile(profile_name), lambda done: None)
    stages = {"analyze": time.perf_counter() - started}
    seen = [people.boxes for people in seq.frames()]  # what the models found, before gaps are filled

    started = time.perf_counter()
    seq = smooth.smooth_sequence(seq, video.width, video.height)
    stages["smooth"] = time.perf_counter() - started
    started = time.perf_counter()
    summary = metrics.compute_metrics("bench", video, seq)
    stages["metrics"] = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        render.render(video, seq, Path(tmp) / "annotated.mp4", preset=settings.render_preset, crf=settings.render_crf)
        stages["render"] = time.perf_counter() - started
        started = time.perf_counter()
        export.export(Path(tmp), "bench", video, seq, summary)
        stages["export"] = time.perf_counter() - started
    total = sum(stages.values())
    result = {
        "frames": n,
        "people": len(seq.track_ids()),
        "load_s": load_s,
        "decode_only_fps": n / decode_s,
        "detect_ms": 1000 * detector.seconds / n,
        "pose_ms": 1000 * pose_timers[0].seconds / n,
        "stage_fps": {name: n / s for name, s in stages.items()},
        "analysis_fps": n / stages["analyze"],
        "overall_fps": n / total,
        "realtime_x": (n / total) / video.fps,
        "looks": seq.generator["detection"]["frames"],
        "peak_rss_mb": peak_rss_mb(),
        **quality(clip, seen),
    }
    if truth_path(clip).is_file():
        result["smoothing"] = smoothing_on_real_keypoints(clip, seq)
    return result


def smoothing_on_real_keypoints(clip: Path, seq: Any) -> dict[str, float]:
    """The wide shot's dancers bounce at 3 Hz by 5% of their height: compare raw and smoothed body keypoints
    (shoulders to ankles, where sure) with the true vertical motion of their dancer's box."""
    from tests.motion import amplitude_and_lag, jitter
    from tests.stage import match_rows, wide_shot_dancers

    truth = np.load(truth_path(clip))
    hz = wide_shot_dancers(SIZE)[0].bounce_hz
    names = seq.skeleton.keypoints
    body = [names.index(n) for n in names if n.split("_")[-1] in ("shoulder", "hip", "knee", "ankle")]
    people, kept, lags, cuts = seq.people, [], [], []
    raw, seen = people.keypoints_raw, ~people.interpolated  # the models' own values, where a model saw them
    matched = match_rows(truth, people)
    for dancer in range(truth.shape[1]):
        rows = matched[:, dancer]
        rows = rows[rows >= 0]
        rows = rows[seen[rows]]
        if len(rows) < 0.9 * len(truth):
            continue
        times = seq.times[people.frames[rows]]
        true_y = truth[people.frames[rows], dancer, 1]  # the dancer's top edge: every joint moves with it
        for k in body:
            sure = raw[rows, k, 2] >= 0.5
            if sure.mean() < 0.9:
                continue
            smoothed, noisy = people.keypoints[rows, k, 1], raw[rows, k, 1]
            amp, lag = amplitude_and_lag(smoothed, true_y, times, hz)
            raw_amp, _ = amplitude_and_lag(noisy, true_y, times, hz)
            kept.append(amp / raw_amp)
            lags.append(lag * FPS)
            cuts.append(jitter(noisy, true_y) / jitter(smoothed, true_y))
    return {
        "keypoints": len(kept),
        "amplitude_kept": float(np.median(kept)),
        "lag_frames": float(np.median(lags)),
        "jitter_cut": float(np.median(cuts)),
    }


def run_baseline(clip: Path) -> dict[str, Any]:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    from worker.models.catalog import YOLO_POSE_PT, models_dir
    from worker.pipeline.decode import decode_frames

    model = YOLO(str(models_dir() / YOLO_POSE_PT.name), task="pose")
    boxes, frames = [], 0
    started = time.perf_counter()
    for frame in decode_frames(clip, 0):
        result = model.track(
            frame.image, persist=True, tracker="bytetrack.yaml", imgsz=1280, device="cpu", verbose=False
        )[0]
        tracked = result.boxes.id is not None if result.boxes is not None else False
        boxes.append(result.boxes.xyxy.cpu().numpy() if tracked else np.zeros((0, 4)))
        frames += 1
    elapsed = time.perf_counter() - started
    return {"frames": frames, "analysis_fps": frames / elapsed, "peak_rss_mb": peak_rss_mb(), **quality(clip, boxes)}


def child(kind: str, clip: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(clip)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"bench run {kind} on {clip.name} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- report


def spread(runs: list[dict[str, Any]], *path: str) -> tuple[float, float, float]:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value[key]
        values.append(float(value))
    return statistics.median(values), min(values), max(values)


def fmt(runs: list[dict[str, Any]], *path: str, digits: int = 1, unit: str = "") -> str:
    mid, lo, hi = spread(runs, *path)
    if len(runs) == 1:
        return f"{mid:.{digits}f}{unit}"
    return f"{mid:.{digits}f}{unit} ({lo:.{digits}f}-{hi:.{digits}f})"


def report(kind: str, results: dict[str, list[dict[str, Any]]], baseline: list[dict[str, Any]] | None) -> None:
    for profile, runs in results.items():
        r = runs[0]
        print(f"\n[{kind} / {profile}] people={r['people']} looks={r['looks']} (median, min-max of {len(runs)} runs)")
        quality_line = f"  recall vs reference {fmt(runs, 'recall_ref', digits=3)}"
        if "recall_truth" in r:
            quality_line += f" | vs true boxes {fmt(runs, 'recall_truth', digits=3)}"
        print(quality_line)
        print(
            f"  detect {fmt(runs, 'detect_ms')} ms/frame | pose {fmt(runs, 'pose_ms')} ms/frame | "
            f"decode only {fmt(runs, 'decode_only_fps', digits=0)} fps"
        )
        stages = ("analyze", "smooth", "render", "export")
        print("  stage fps: " + " | ".join(f"{s} {fmt(runs, 'stage_fps', s, digits=0)}" for s in stages))
        goal = (
            "goal >= 30 fps with render+export"
            if kind == "closeup" and profile == "fast"
            else "goal >= 0.5x real time"
            if kind == "closeup"
            else ""
        )
        print(
            f"  analysis {fmt(runs, 'analysis_fps')} fps | overall (analyze..export) {fmt(runs, 'overall_fps')} fps "
            f"= {fmt(runs, 'realtime_x', digits=2)}x real time {goal}"
        )
        print(f"  peak RSS {fmt(runs, 'peak_rss_mb', digits=0)} MB | model load {fmt(runs, 'load_s')} s")
        if "smoothing" in r:
            print(
                f"  smoothing on real keypoints, 3 Hz bounce of 5% body height ({r['smoothing']['keypoints']} "
                f"keypoints): amplitude kept {fmt(runs, 'smoothing', 'amplitude_kept', digits=2)} (goal >= 0.9) | "
                f"lag {fmt(runs, 'smoothing', 'lag_frames', digits=2)} frames (goal <= 1) | "
                f"jitter cut {fmt(runs, 'smoothing', 'jitter_cut')}x (goal >= 2)"
            )
    if baseline:
        print(
            f"\n[{kind} / baseline] plain Ultralytics model.track (torch, imgsz 1280): "
            f"{fmt(baseline, 'analysis_fps')} fps (decode+track) | recall vs reference "
            f"{fmt(baseline, 'recall_ref', digits=3)}"
            + (f" | vs true boxes {fmt(baseline, 'recall_truth', digits=3)}" if "recall_truth" in baseline[0] else "")
            + f" | peak RSS {fmt(baseline, 'peak_rss_mb', digits=0)} MB"
        )
        for profile, runs in results.items():
            ratio = [r["analysis_fps"] / b["analysis_fps"] for r, b in zip(runs, baseline, strict=False)]
            overall = [r["overall_fps"] / b["analysis_fps"] for r, b in zip(runs, baseline, strict=False)]
            same_recall = spread(runs, "recall_ref")[0] >= spread(baseline, "recall_ref")[0]
            print(
                f"  {profile}: analysis {statistics.median(ratio):.2f}x baseline ({min(ratio):.2f}-{max(ratio):.2f}), "
                f"with render+export {statistics.median(overall):.2f}x; recall "
                f"{'at least' if same_recall else 'BELOW'} the baseline's"
                + (" (goal: >= 1.5x at equal recall)" if kind == "wide" and profile == "fast" else "")
            )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profiles", default="fast,accurate")
    parser.add_argument("--clips", default="closeup,wide")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--rss-seconds", type=float, default=0.0, help="also run fast on a close-up this long")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "CLIP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, clip = args.child
        print(json.dumps(run_baseline(Path(clip)) if kind == "baseline" else run_profile(Path(clip), kind)))
        return 0

    print(f"cpus={os.cpu_count()} | {SIZE[0]}x{SIZE[1]} {FPS:g} fps, {args.seconds:g} s clips | repeat={args.repeat}")
    profiles = args.profiles.split(",")
    for kind in args.clips.split(","):
        clip = build_clip(kind, args.seconds)
        reference_boxes(clip)  # computed once, outside the timed runs
        results: dict[str, list[dict[str, Any]]] = {p: [] for p in profiles}
        baseline: list[dict[str, Any]] = []
        for _ in range(args.repeat):  # interleaved, so a noisy moment hits every contender alike
            for profile in profiles:
                results[profile].append(child(profile, clip))
            if not args.no_baseline and kind == "wide":
                baseline.append(child("baseline", clip))
        report(kind, results, baseline or None)
    if args.rss_seconds:
        short, long = build_clip("closeup", args.seconds), build_clip("closeup", args.rss_seconds)
        a, b = child("fast", short), child("fast", long)
        print(
            f"\n[peak RSS vs length] fast, close-up: {args.seconds:g} s -> {a['peak_rss_mb']:.0f} MB, "
            f"{args.rss_seconds:g} s -> {b['peak_rss_mb']:.0f} MB (ratio {b['peak_rss_mb'] / a['peak_rss_mb']:.2f}; "
            f"goal: flat)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
