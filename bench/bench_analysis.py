"""Speed of the real analysis per stage and profile, against a plain Ultralytics `model.track` loop.

    python bench/bench_analysis.py [--seconds 20] [--size 1280x720] [--fps 30] [--profiles fast,accurate]

Builds (once, cached in bench/out/) a clip panning over zidane.jpg (two people),
then runs, each in its own process so peak RSS is per run:
- every profile through the worker's own stages: analyze (decode + detect/track + pose),
  smooth, metrics, render (H.264), export; fps per stage and overall;
- the baseline: decode + `YOLO('yolo11n-pose.pt').track(frame, persist=True)` (torch, imgsz 640,
  ByteTrack), the way a plain Ultralytics script does it.
Needs requirements-gpu.txt and `python -m worker.models.prepare`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it is not inherited across fork+exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Timed:
    """Wraps a callable and adds up the time spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __getattr__(self, name):
        return getattr(self.fn, name)

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def run_profile(clip: Path, profile: str) -> dict:
    from shared.settings import Settings
    from worker.analysis.real import RealAnalyzer
    from worker.pipeline import decode, export, metrics, render, smooth
    from worker.pipeline.probe import probe

    started = time.perf_counter()
    analyzer = RealAnalyzer(Settings(device="cpu"))
    load_s = time.perf_counter() - started
    video = probe(clip)
    n = video.frame_count

    started = time.perf_counter()
    for _ in decode.decode_frames(video.path, video.rotation):
        pass
    decode_s = time.perf_counter() - started

    # Time the model calls inside analyze without changing it.
    detector_factory, pose_factory = analyzer.detector, analyzer.pose_estimator
    timers: dict[str, Timed] = {}

    def timed_detector(p):
        timers["detect"] = Timed(detector_factory(p))
        return timers["detect"]

    def timed_pose(p):
        timers["pose"] = Timed(pose_factory(p))
        return timers["pose"]

    analyzer.detector, analyzer.pose_estimator = timed_detector, timed_pose
    started = time.perf_counter()
    seq = analyzer.analyze(video, profile, lambda done: None)
    analyze_s = time.perf_counter() - started

    stages = {"analyze": analyze_s}
    started = time.perf_counter()
    seq = smooth.smooth_sequence(seq)
    stages["smooth"] = time.perf_counter() - started
    started = time.perf_counter()
    summary = metrics.compute_metrics("bench", video, seq)
    stages["metrics"] = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        render.render(
            video, seq, Path(tmp) / "annotated.mp4", preset=Settings().render_preset, crf=Settings().render_crf
        )
        stages["render"] = time.perf_counter() - started
        started = time.perf_counter()
        export.export(Path(tmp), "bench", video, seq, summary)
        stages["export"] = time.perf_counter() - started
    total = sum(stages.values())
    return {
        "profile": profile,
        "frames": n,
        "people": len(seq.track_ids()),
        "load_s": load_s,
        "decode_only_fps": n / decode_s,
        "detect_track_ms": 1000 * timers["detect"].seconds / n,
        "pose_ms": 1000 * timers["pose"].seconds / n,
        "stage_fps": {name: n / s for name, s in stages.items()},
        "analysis_fps": n / analyze_s,
        "overall_fps": n / total,
        "realtime_x": (n / total) / video.fps,
        "generator": seq.generator,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_baseline(clip: Path) -> dict:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    from worker.models.catalog import YOLO_POSE_PT, models_dir
    from worker.pipeline.decode import decode_frames
    from worker.pipeline.probe import probe

    video = probe(clip)
    model = YOLO(str(models_dir() / YOLO_POSE_PT.name), task="pose")
    frames = ids = 0
    started = time.perf_counter()
    seen = set()
    for frame in decode_frames(video.path, video.rotation):
        result = model.track(frame.image, persist=True, tracker="bytetrack.yaml", device="cpu", verbose=False)[0]
        if result.boxes is not None and result.boxes.id is not None:
            seen.update(int(i) for i in result.boxes.id.tolist())
        frames += 1
    elapsed = time.perf_counter() - started
    ids = len(seen)
    return {"profile": "baseline", "frames": frames, "people": ids, "analysis_fps": frames / elapsed,
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def build_clip(seconds: float, size: tuple[int, int], fps: float) -> Path:
    from tests.clips import make_pan_clip, package_photo

    out = ROOT / "bench" / "out" / f"zidane_{size[0]}x{size[1]}_{fps:g}fps_{seconds:g}s.mp4"
    if not out.is_file():
        photo = package_photo("zidane.jpg")
        if photo is None:
            sys.exit("zidane.jpg not found: pip install -r requirements-gpu.txt")
        make_pan_clip(photo, out, seconds=seconds, fps=fps, size=size, audio=True, preset="veryfast")
    return out


def child(args: list[str]) -> dict:
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-3000:])
        raise SystemExit(f"bench run {args} failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--profiles", default="fast,accurate")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "CLIP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, clip = args.child
        print(json.dumps(run_baseline(Path(clip)) if kind == "baseline" else run_profile(Path(clip), kind)))
        return 0

    width, height = (int(v) for v in args.size.split("x"))
    clip = build_clip(args.seconds, (width, height), args.fps)
    print(
        f"clip: {clip.name} ({args.seconds:g} s, {width}x{height}, {args.fps:g} fps, 2 people), cpus={os.cpu_count()}"
    )
    results = [child(["--child", p, str(clip)]) for p in args.profiles.split(",")]
    baseline = None if args.no_baseline else child(["--child", "baseline", str(clip)])
    for r in results:
        s = r["stage_fps"]
        print(
            f"\n[{r['profile']}] {r['generator']['detector']} + {r['generator']['pose_model']}, people={r['people']}\n"
            f"  decode only {r['decode_only_fps']:.0f} fps | detect+track {r['detect_track_ms']:.1f} ms/frame | "
            f"pose {r['pose_ms']:.1f} ms/frame\n"
            f"  stage fps: analyze {s['analyze']:.1f} | smooth {s['smooth']:.0f} | metrics {s['metrics']:.0f} | "
            f"render {s['render']:.1f} | export {s['export']:.0f}\n"
            f"  overall (analyze..export) {r['overall_fps']:.1f} fps = {r['realtime_x']:.2f}x real time | "
            f"peak RSS {r['peak_rss_mb']:.0f} MB | model load {r['load_s']:.1f} s"
        )
    if baseline:
        print(
            f"\n[baseline] plain ultralytics model.track (torch, imgsz 640): {baseline['analysis_fps']:.1f} fps "
            f"(decode+track), people ids={baseline['people']}, peak RSS {baseline['peak_rss_mb']:.0f} MB"
        )
        for r in results:
            print(
                f"  {r['profile']}: analysis {r['analysis_fps'] / baseline['analysis_fps']:.2f}x baseline, "
                f"with render+export {r['overall_fps'] / baseline['analysis_fps']:.2f}x baseline"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
