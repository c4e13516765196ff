"""Detection: a multi-person pose model, images in, one `Detections` per image out.

The model is Ultralytics YOLO11n-pose (boxes and 17 COCO keypoints). On the
CPU it runs as its ONNX export on onnxruntime (`OnnxPoseDetector`: letterbox,
one batched inference, confidence filter, NMS and un-letterbox, all in
numpy/OpenCV); on a GPU it runs through Ultralytics on torch
(`TorchPoseDetector`). Both take a batch of images and an input size, so the
same call serves a whole frame and a batch of crops around tracked dancers
(`worker.pipeline.find` decides which, frame by frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import cv2
import numpy as np

from worker.pipeline.records import Detections

NUM_KEYPOINTS = 17  # COCO


class PoseDetector(Protocol):
    name: str  # model and runtime, for the results' `generator`

    def __call__(self, images: Sequence[np.ndarray], imgsz: int) -> list[Detections]:
        """People in each image, in that image's pixels; `imgsz` is the long side the model sees."""
        ...


def letterbox(image: np.ndarray, size: int, stride: int = 32) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize so the long side is `size`, pad each side to a multiple of `stride` (grey 114), as Ultralytics does."""
    h, w = image.shape[:2]
    ratio = min(size / h, size / w)
    new_w, new_h = max(1, round(w * ratio)), max(1, round(h * ratio))
    pad_w, pad_h = (-new_w) % stride, (-new_h) % stride
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR) if (new_w, new_h) != (w, h) else image
    left, top = pad_w // 2, pad_h // 2
    if pad_w or pad_h:
        resized = cv2.copyMakeBorder(
            resized, top, pad_h - top, left, pad_w - left, cv2.BORDER_CONSTANT, value=(114, 114, 114)
        )
    return resized, ratio, (float(left), float(top))


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first."""
    if len(scores) == 0:
        return np.zeros((0,), np.int64)
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        xx1, yy1 = np.maximum(x1[i], x1[rest]), np.maximum(y1[i], y1[rest])
        xx2, yy2 = np.minimum(x2[i], x2[rest]), np.minimum(y2[i], y2[rest])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        overlap = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[overlap <= iou]
    return np.asarray(keep, np.int64)


def decode_yolo_pose(
    output: np.ndarray, ratio: float, pad: tuple[float, float], image_shape: tuple[int, int],
    conf: float, iou: float, max_det: int,
) -> Detections:  # fmt: skip
    """(56, A) raw head output (cx, cy, w, h, score, 17 x (x, y, conf)) to image-pixel detections."""
    pred = output.T  # (A, 56)
    pred = pred[pred[:, 4] > conf]
    if not len(pred):
        return Detections.empty(NUM_KEYPOINTS)
    cx, cy, w, h = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    scores = pred[:, 4]
    keep = nms(boxes, scores, iou)[:max_det]
    boxes, scores = boxes[keep], scores[keep]
    kpts = pred[keep, 5:].reshape(-1, NUM_KEYPOINTS, 3).copy()
    dx, dy = pad
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - dx) / ratio
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - dy) / ratio
    kpts[..., 0] = (kpts[..., 0] - dx) / ratio
    kpts[..., 1] = (kpts[..., 1] - dy) / ratio
    height, width = image_shape
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return Detections.create(boxes, scores, kpts)


class OnnxPoseDetector:
    """YOLO11n-pose ONNX (dynamic batch and size) on onnxruntime."""

    name = "yolo11n-pose (onnxruntime)"

    def __init__(self, session: Any, conf: float = 0.1, iou: float = 0.7, max_det: int = 50) -> None:
        self.session, self.conf, self.iou, self.max_det = session, conf, iou, max_det
        self.input_name = session.get_inputs()[0].name

    def __call__(self, images: Sequence[np.ndarray], imgsz: int) -> list[Detections]:
        boxed = [letterbox(image, imgsz) for image in images]
        out: list[Detections] = []
        # One inference per run of same-shaped inputs: crops share a shape and go in one batch.
        start = 0
        while start < len(boxed):
            stop = start + 1
            while stop < len(boxed) and boxed[stop][0].shape == boxed[start][0].shape:
                stop += 1
            blob = cv2.dnn.blobFromImages([b[0] for b in boxed[start:stop]], scalefactor=1 / 255.0, swapRB=True)
            (output,) = self.session.run(None, {self.input_name: blob})
            for i in range(start, stop):
                _, ratio, pad = boxed[i]
                out.append(
                    decode_yolo_pose(
                        output[i - start], ratio, pad, images[i].shape[:2], self.conf, self.iou, self.max_det
                    )
                )
            start = stop
        return out


class TorchPoseDetector:
    """YOLO11n-pose through Ultralytics on torch (GPU profiles)."""

    name = "yolo11n-pose (torch)"

    def __init__(self, model: Any, device: str, conf: float = 0.1, iou: float = 0.7, max_det: int = 50) -> None:
        self.model, self.device, self.conf, self.iou, self.max_det = model, device, conf, iou, max_det

    def __call__(self, images: Sequence[np.ndarray], imgsz: int) -> list[Detections]:
        results = self.model.predict(
            list(images), imgsz=imgsz, conf=self.conf, iou=self.iou, max_det=self.max_det,
            device=self.device, verbose=False, half=self.device == "cuda",
        )  # fmt: skip
        out = []
        for result in results:
            if result.boxes is None or not len(result.boxes):
                out.append(Detections.empty(NUM_KEYPOINTS))
                continue
            out.append(
                Detections.create(
                    result.boxes.xyxy.float().cpu().numpy(),
                    result.boxes.conf.float().cpu().numpy(),
                    result.keypoints.data.float().cpu().numpy(),
                )
            )
        return out
