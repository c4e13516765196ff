"""Real models on real pixels: clips built from the photos Ultralytics ships, analysed once per session.

The models load once (as in a worker); missing prepared models are prepared
here (needs requirements-gpu.txt installed). Without the ML packages these
tests are skipped with the command that installs them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.profiles import Profile
from tests.clips import make_pan_clip, package_photo
from tests.tools import missing_tool

ML_MODULES = ("onnxruntime", "ai_edge_litert", "ultralytics", "lap")
FPS = 15.0
SECONDS = 2.0
SIZE = (640, 360)


def _ml_missing() -> list[str]:
    return [name for name in ML_MODULES if importlib.util.find_spec(name) is None]


@pytest.fixture(scope="session")
def models():
    missing = _ml_missing()
    if missing:
        missing_tool(f"the ML packages {', '.join(missing)} (pip install -r requirements-gpu.txt)")
    from worker.models.catalog import models_dir
    from worker.models.prepare import missing_files, prepare
    from worker.models.runtime import load_models

    folder = models_dir()
    if missing_files(folder):
        prepare(folder)
    return load_models("cpu", folder)


@pytest.fixture(scope="session")
def analyzer(models):
    from worker.analysis.real import RealAnalyzer

    return RealAnalyzer(models=models)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def clip(clip_dir: Path, models) -> Callable[..., tuple[Path, list[float]]]:
    """`clip(photo, rotation=0, vfr=False, audio=False, size=SIZE)` -> (path, written frame times), cached."""
    cache: dict[tuple, tuple[Path, list[float]]] = {}

    def build(photo: str = "zidane.jpg", *, rotation: int = 0, vfr: bool = False, audio: bool = False,
              size: tuple[int, int] = SIZE, zoom: float = 0.1) -> tuple[Path, list[float]]:  # fmt: skip
        key = (photo, rotation, vfr, audio, size, zoom)
        if key not in cache:
            image = package_photo(photo)
            assert image is not None, f"{photo} not found in the installed ultralytics assets"
            name = f"{Path(photo).stem}_r{rotation}_{'vfr' if vfr else 'cfr'}_{'a' if audio else 'na'}"
            path = clip_dir / f"{name}_{size[0]}x{size[1]}_z{zoom}.mp4"
            times = make_pan_clip(
                image, path, seconds=SECONDS, fps=FPS, size=size, rotation=rotation, audio=audio, vfr=vfr, zoom=zoom
            )
            cache[key] = (path, times)
        return cache[key]

    return build


@pytest.fixture(scope="session")
def analyze(analyzer, clip) -> Callable:
    """`analyze(profile, **clip_args)` -> (VideoInfo, PoseSequence, written times), cached per session."""
    from worker.pipeline.probe import probe

    cache: dict[tuple, tuple] = {}

    def run(profile: str = "fast", **clip_args):
        key = (profile, tuple(sorted(clip_args.items())))
        if key not in cache:
            path, times = clip(**clip_args)
            video = probe(path)
            done: list[int] = []
            sequence = analyzer.analyze(video, Profile(profile), done.append)
            assert done and done[-1] == sequence.frame_count
            cache[key] = (video, sequence, times)
        return cache[key]

    return run
