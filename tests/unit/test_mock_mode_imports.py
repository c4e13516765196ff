"""Mock mode runs without ML packages: nothing on its path imports them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "ultralytics", "mediapipe", "onnxruntime", "ai_edge_litert", "lap")

SCRIPT = """
import json, sys
from pathlib import Path
from backend.main import create_app
from shared.profiles import Profile
from shared.settings import Settings
from tests.synthetic import make_clip
from worker.analysis import load_analyzer
from worker.pipeline import beats, export, metrics, probe, render, smooth
import worker.__main__, worker.tasks  # the worker's own start-up path

settings = Settings(use_mock_analysis=True)
create_app(settings)
out = Path(sys.argv[1])
clip = make_clip(out / "clip.mp4", seconds=1, fps=10, audio=True)
video = probe.probe(clip)
music = beats.find_beats(clip)
poses = load_analyzer(settings).analyze(video, Profile.FAST, lambda n: None)
poses = smooth.smooth_sequence(poses, video.width, video.height)
summary = metrics.compute_metrics("job", video, poses, music)
render.render(video, poses, out / "annotated.mp4", preset="ultrafast")
export.export(out, "job", video, poses, summary, music)
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in HEAVY)))
"""


def test_the_mock_path_imports_no_ml_package(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{SCRIPT}", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert (tmp_path / "annotated.mp4").stat().st_size > 0
