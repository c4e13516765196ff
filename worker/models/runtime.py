"""Load the prepared models once per worker process.

CPU: YOLO11n-pose runs as ONNX on onnxruntime (no torch import at all), and
BlazePose's landmark model runs on LiteRT (the TFLite runtime MediaPipe itself
uses, with XNNPACK). GPU (cuda / mps): YOLO runs through Ultralytics on torch
on that device; BlazePose stays on LiteRT on the CPU (7 ms per crop).
Everything is loaded in this process, nothing forks, so a CUDA context made
here is used by the same process that runs the jobs (rq SimpleWorker).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import ErrorCode, ServiceError
from worker.models.catalog import BLAZEPOSE_FULL_TFLITE, YOLO_POSE_ONNX, YOLO_POSE_PT, models_dir
from worker.models.device import choose_device
from worker.models.prepare import missing_files

log = logging.getLogger(__name__)

FIX = "run `python -m worker.models.prepare` (it fills MODELS_DIR, default .local/models)"


def cpu_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


def _unavailable(message: str, **details: Any) -> ServiceError:
    return ServiceError(ErrorCode.MODEL_UNAVAILABLE, message, dict(details))


def _need_module(module: str, purpose: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise _unavailable(
            f"The Python package '{module}' ({purpose}) is not installed: pip install -r requirements-gpu.txt",
            module=module,
        )


@dataclass
class LoadedModels:
    device: str
    folder: Path
    yolo_backend: str  # "onnxruntime" | "torch"
    yolo: Any  # onnxruntime.InferenceSession | ultralytics.YOLO
    blazepose: Any  # ai_edge_litert Interpreter, allocated
    threads: int


def load_onnx_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # The find stage feeds many input shapes (whole frames at several sizes, crop batches as large as the
    # number of dancers); a memory pattern is planned and kept per shape. Measured: peak RSS 255 MB with
    # patterns, 176 MB without, at the same speed.
    options.enable_mem_pattern = False
    # Idle pool threads must not spin after a run: LiteRT (BlazePose) and the
    # decode thread need those cores right after YOLO finishes.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_litert(path: Path, threads: int) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


def load_torch_yolo(path: Path, device: str) -> Any:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    model = YOLO(str(path), task="pose")
    model.to(device)
    return model


def load_models(device_setting: str = "auto", folder: Path | None = None) -> LoadedModels:
    """Check and load every model; any problem raises MODEL_UNAVAILABLE saying how to fix it."""
    folder = folder or models_dir()
    device = choose_device(device_setting)
    missing = missing_files(folder, with_checkpoint=device != "cpu")
    if missing:
        raise _unavailable(
            f"Model files missing in {folder}: {', '.join(missing)}. To fix: {FIX}.",
            models_dir=str(folder),
            missing=missing,
        )
    threads = cpu_threads()
    _need_module("ai_edge_litert", "LiteRT, runs BlazePose")
    try:
        if device == "cpu":
            _need_module("onnxruntime", "runs YOLO on the CPU")
            yolo, backend = load_onnx_session(folder / YOLO_POSE_ONNX, threads), "onnxruntime"
        else:
            _need_module("ultralytics", "runs YOLO on the GPU")
            yolo, backend = load_torch_yolo(folder / YOLO_POSE_PT.name, device), "torch"
        blazepose = load_litert(folder / BLAZEPOSE_FULL_TFLITE.name, threads)
    except ServiceError:
        raise
    except Exception as exc:  # a corrupt or incompatible file
        raise _unavailable(
            f"A model in {folder} could not be loaded ({type(exc).__name__}: {exc}). To fix: {FIX} --force.",
            models_dir=str(folder),
        ) from exc
    log.info(
        "models loaded from %s: yolo on %s (%s), blazepose on LiteRT, %d threads", folder, device, backend, threads
    )
    return LoadedModels(
        device=device, folder=folder, yolo_backend=backend, yolo=yolo, blazepose=blazepose, threads=threads
    )
