"""The GPU code path (Ultralytics on torch) run on the CPU: same people and boxes as the ONNX path."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.clips import package_photo

pytestmark = pytest.mark.pipeline


def test_torch_detector_matches_onnx_detector(models):
    from worker.models.runtime import load_torch_yolo
    from worker.pipeline.detect import OnnxPoseDetector, TorchPoseDetector

    image = cv2.imread(str(package_photo("zidane.jpg")))
    onnx = OnnxPoseDetector(models.yolo)([image], 640)[0]
    torch_model = load_torch_yolo(models.folder / "yolo11n-pose.pt", "cpu")
    torch = TorchPoseDetector(torch_model, "cpu")([image], 640)[0]
    keep_onnx, keep_torch = onnx.scores > 0.5, torch.scores > 0.5
    assert keep_onnx.sum() == keep_torch.sum() == 2
    a = onnx.boxes[keep_onnx][np.argsort(onnx.boxes[keep_onnx][:, 0])]
    b = torch.boxes[keep_torch][np.argsort(torch.boxes[keep_torch][:, 0])]
    assert np.abs(a - b).max() < 8.0
