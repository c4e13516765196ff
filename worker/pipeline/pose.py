"""Pose stage: keypoints for every tracked dancer.

- profile `fast`: YOLO11n-pose's own 17 COCO keypoints (`YoloKeypoints`), no extra cost.
- profile `accurate`: MediaPipe BlazePose GHUM full (33 landmarks: hands, heels,
  toes, face) on each tracked dancer's crop (`BlazePoseLandmarks`).

BlazePose is a two-step model in MediaPipe: a detector finds one person and a
region of interest, then the landmark model runs on that region rotated so the
body is upright. Here YOLO + ByteTrack already found every dancer, so the
region is built from the dancer's YOLO keypoints exactly the way MediaPipe
builds it from its own detector's keypoints (centre on the mid-hip, turned so
mid-hip -> mid-shoulder points up, a square 2.5x the hip-to-farthest-joint
radius), and only the landmark model runs: once per dancer, multi-person,
robust to dancers upside down. The landmark model runs on LiteRT (the TFLite
runtime MediaPipe uses), so the mediapipe library itself is not needed.
"""

from __future__ import annotations

from typing import Any, Protocol

import cv2
import numpy as np

from shared.skeletons import BLAZEPOSE33, COCO17, Skeleton
from worker.pipeline.detect_track import TrackedPerson

# COCO keypoint indices used for the region of interest.
L_SHOULDER, R_SHOULDER, L_HIP, R_HIP = 5, 6, 11, 12


class PoseEstimator(Protocol):
    skeleton: Skeleton
    name: str

    def __call__(self, image: np.ndarray, people: list[TrackedPerson]) -> list[np.ndarray]:
        """(K, 3) keypoints x, y, score in frame pixels for each person, in order."""
        ...


class YoloKeypoints:
    skeleton = COCO17
    name = "yolo11n-pose (coco17)"

    def __call__(self, image: np.ndarray, people: list[TrackedPerson]) -> list[np.ndarray]:
        return [person.keypoints for person in people]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def pose_roi(box: np.ndarray, keypoints: np.ndarray, min_score: float = 0.3) -> tuple[np.ndarray, float, np.ndarray]:
    """(centre (2,), side, up unit vector (2,)) of the square region the landmark model sees."""
    xy, conf = keypoints[:, :2].astype(np.float64), keypoints[:, 2]
    torso = [L_SHOULDER, R_SHOULDER, L_HIP, R_HIP]
    x1, y1, x2, y2 = box.astype(np.float64)
    box_side = max(x2 - x1, y2 - y1)
    if np.all(conf[torso] >= min_score):
        hip = xy[[L_HIP, R_HIP]].mean(axis=0)
        shoulder = xy[[L_SHOULDER, R_SHOULDER]].mean(axis=0)
        up = shoulder - hip
        norm = np.linalg.norm(up)
        if norm > 1e-3:
            up = up / norm
            visible = xy[conf >= min_score]
            # The detector's "body circle" reaches past the head top; the nose/ears are ~10% short of it.
            radius = 1.1 * float(np.max(np.linalg.norm(visible - hip, axis=1)))
            radius = max(radius, 0.35 * box_side, 1.5 * norm)
            return hip, 2.5 * radius, up
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    return centre, 1.25 * max(box_side, 1.0), np.array([0.0, -1.0])


def roi_matrix(centre: np.ndarray, side: float, up: np.ndarray, size: int) -> np.ndarray:
    """2x3 affine from crop pixels (u, v) to frame pixels: the crop's up is the body's up."""
    down = -up
    right = np.array([down[1], -down[0]])
    scale = side / size
    half = size / 2.0
    origin = centre - half * scale * (right + down)
    return np.array([[scale * right[0], scale * down[0], origin[0]], [scale * right[1], scale * down[1], origin[1]]])


class BlazePoseLandmarks:
    """BlazePose GHUM full landmark model (256x256 RGB in [0, 1]) on one crop per tracked person."""

    skeleton = BLAZEPOSE33
    name = "blazepose-full (33 landmarks, litert)"

    def __init__(self, interpreter: Any, box_margin: float = 0.1) -> None:
        self.interpreter = interpreter
        self.box_margin = box_margin
        detail = interpreter.get_input_details()[0]
        self.input_index = detail["index"]
        self.size = int(detail["shape"][1])
        outputs = {tuple(d["shape"]): d["index"] for d in interpreter.get_output_details()}
        self.landmarks_index = outputs[(1, 195)]
        self.flag_index = outputs[(1, 1)]

    def crop(self, image: np.ndarray, person: TrackedPerson) -> tuple[np.ndarray, np.ndarray]:
        centre, side, up = pose_roi(person.box, person.keypoints)
        matrix = roi_matrix(centre, side, up, self.size)
        crop = cv2.warpAffine(
            image, matrix, (self.size, self.size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
        )  # fmt: skip
        # Black out everything outside the dancer's own (slightly grown) box, as the crop's border is:
        # the landmark model follows the most salient person, and a neighbour must not be that person.
        x1, y1, x2, y2 = person.box.astype(np.float64)
        grow_x, grow_y = self.box_margin * (x2 - x1), self.box_margin * (y2 - y1)
        corners = np.array(
            [
                [x1 - grow_x, y1 - grow_y],
                [x2 + grow_x, y1 - grow_y],
                [x2 + grow_x, y2 + grow_y],
                [x1 - grow_x, y2 + grow_y],
            ]
        )
        inverse = cv2.invertAffineTransform(matrix)
        polygon = np.c_[corners, np.ones(4)] @ inverse.T
        mask = np.zeros(crop.shape[:2], np.uint8)
        cv2.fillConvexPoly(mask, np.round(polygon).astype(np.int32), 1)
        crop[mask == 0] = 0
        return crop, matrix

    def estimate(self, image: np.ndarray, person: TrackedPerson) -> tuple[np.ndarray, float]:
        """(33, 3) landmarks in frame pixels with visibility as the score, and the pose-present flag."""
        crop, matrix = self.crop(image, person)
        rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        tensor = (rgb.astype(np.float32) * (1.0 / 255.0))[None]
        self.interpreter.set_tensor(self.input_index, tensor)
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.landmarks_index).reshape(-1, 5)[: len(BLAZEPOSE33.keypoints)]
        flag = float(self.interpreter.get_tensor(self.flag_index).reshape(-1)[0])
        uv1 = np.c_[raw[:, :2], np.ones(len(raw))]
        xy = uv1 @ matrix.T
        visibility = _sigmoid(raw[:, 3])
        return np.c_[xy, visibility].astype(np.float32), flag

    def __call__(self, image: np.ndarray, people: list[TrackedPerson]) -> list[np.ndarray]:
        return [self.estimate(image, person)[0] for person in people]
