"""Which model files a worker needs: the CPU runs the ONNX export, so it needs no checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from worker.models.catalog import BLAZEPOSE_FULL_TFLITE, MANIFEST, YOLO_POSE_ONNX, YOLO_POSE_PT
from worker.models.prepare import missing_files


def cpu_image_models(folder: Path) -> Path:
    """What the CPU worker image ships: the ONNX export, BlazePose and the manifest, no .pt."""
    (folder / YOLO_POSE_ONNX).write_bytes(b"onnx" * 10)
    (folder / BLAZEPOSE_FULL_TFLITE.name).write_bytes(b"tflite")
    (folder / MANIFEST).write_text(json.dumps({"files": {YOLO_POSE_ONNX: {"bytes": 40}}}))
    return folder


def test_the_cpu_set_needs_no_checkpoint(tmp_path: Path) -> None:
    folder = cpu_image_models(tmp_path)
    assert missing_files(folder, with_checkpoint=False) == []
    # A GPU worker runs the checkpoint itself, and is told it is missing.
    assert missing_files(folder) == [YOLO_POSE_PT.name]


def test_the_cpu_set_still_needs_the_export_and_blazepose(tmp_path: Path) -> None:
    folder = cpu_image_models(tmp_path)
    (folder / BLAZEPOSE_FULL_TFLITE.name).unlink()
    (folder / YOLO_POSE_ONNX).write_bytes(b"truncated")  # no longer the size the manifest says
    assert missing_files(folder, with_checkpoint=False) == [BLAZEPOSE_FULL_TFLITE.name, YOLO_POSE_ONNX]
