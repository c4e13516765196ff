"""Pose stage: keypoints for every tracked dancer.

- profile `fast`: YOLO11n-pose's own 17 COCO keypoints (`YoloKeypoints`), no
  extra cost. Small dancers were enlarged by the find stage's crops, so their
  keypoints come from the enlarged dancer.
- profile `accurate`: MediaPipe BlazePose GHUM full (33 landmarks: hands,
  heels, toes, face) on each tracked dancer's crop (`BlazePose`).

BlazePose is a two-step model in MediaPipe: a detector finds one person and a
region of interest, then the landmark model runs on that region, rotated so
the body is upright. Here YOLO and ByteTrack have already found every dancer,
so the region is built from the dancer's YOLO keypoints the way MediaPipe
builds it from its own detector's (centred on the mid-hip, turned so
mid-hip -> mid-shoulder points up, a square 2.5x the radius from the hip to the
farthest joint), and only the landmark model runs, once per dancer. It runs on
LiteRT (the TFLite runtime MediaPipe uses), so the mediapipe library is not
needed.

Two things keep the landmarks steady:
- The region moves continuously. Where the torso keypoints are unsure, it
  blends towards a square around the box, on a confidence ramp rather than a
  threshold, and each track's region is smoothed over time.
- The model's pose-present flag is used. Where BlazePose says there is no
  person in the crop (flag below `PRESENT`), its landmarks are not kept. The
  YOLO keypoints fill the 17 joints both skeletons share, and the other 16
  landmarks get score 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from shared.skeletons import BLAZEPOSE33, COCO17, Skeleton
from worker.pipeline.records import Detections

# COCO keypoint indices used for the region of interest.
L_SHOULDER, R_SHOULDER, L_HIP, R_HIP = 5, 6, 11, 12
TORSO = [L_SHOULDER, R_SHOULDER, L_HIP, R_HIP]
# The region follows the torso keypoints fully above RAMP_HIGH, the box fully below RAMP_LOW.
RAMP_LOW, RAMP_HIGH = 0.2, 0.4
# Below this pose-present probability the crop's landmarks are dropped. Not MediaPipe's 0.5, which is where
# its own tracker re-runs its person detector: here YOLO has already found the dancer. Measured on the
# close-up bench clip, a real dancer's landmarks agreed with YOLO's keypoints equally well (0.10-0.11 body
# heights, median) at flags 0.1-0.3, 0.3-0.5, 0.5-0.8 and 0.8-1.0, and a crop of empty stage gives 1e-10.
PRESENT = 0.1
# Where a rejected crop's BlazePose landmarks are placed: the COCO keypoint of the same name, or the nearest one.
STAND_IN = {
    "left_eye_inner": "left_eye", "left_eye_outer": "left_eye", "right_eye_inner": "right_eye",
    "right_eye_outer": "right_eye", "mouth_left": "nose", "mouth_right": "nose",
    "left_pinky": "left_wrist", "left_index": "left_wrist", "left_thumb": "left_wrist",
    "right_pinky": "right_wrist", "right_index": "right_wrist", "right_thumb": "right_wrist",
    "left_heel": "left_ankle", "left_foot_index": "left_ankle",
    "right_heel": "right_ankle", "right_foot_index": "right_ankle",
}  # fmt: skip
COCO_OF_BLAZE = np.array([COCO17.index(STAND_IN.get(name, name)) for name in BLAZEPOSE33.keypoints])
SHARED_JOINTS = np.array([name in COCO17.keypoints for name in BLAZEPOSE33.keypoints])


class PoseEstimator(Protocol):
    skeleton: Skeleton
    name: str

    def __call__(self, image: np.ndarray, people: Detections) -> np.ndarray:
        """(N, K, 3) keypoints x, y, score in frame pixels, one row per person of `people`."""
        ...


class YoloKeypoints:
    skeleton = COCO17
    name = "yolo11n-pose (coco17)"

    def __call__(self, image: np.ndarray, people: Detections) -> np.ndarray:
        return people.keypoints


@dataclass(frozen=True)
class Region:
    """The square the landmark model sees: centre, side and the body's up direction (radians, image coords)."""

    centre: np.ndarray  # (2,)
    side: float
    angle: float  # direction of "up" in the image: -pi/2 is straight up

    @property
    def up(self) -> np.ndarray:
        return np.array([math.cos(self.angle), math.sin(self.angle)])

    def blend(self, other: Region, weight: float) -> Region:
        """`weight` of `other` and the rest of this one; the angle turns the short way."""
        turn = math.remainder(other.angle - self.angle, 2 * math.pi)
        return Region(
            centre=(1 - weight) * self.centre + weight * other.centre,
            side=(1 - weight) * self.side + weight * other.side,
            angle=self.angle + weight * turn,
        )


def box_region(box: np.ndarray) -> Region:
    x1, y1, x2, y2 = box.astype(np.float64)
    return Region(np.array([(x1 + x2) / 2, (y1 + y2) / 2]), 1.25 * max(x2 - x1, y2 - y1, 1.0), -math.pi / 2)


def torso_region(box: np.ndarray, keypoints: np.ndarray, min_score: float = 0.3) -> Region | None:
    """MediaPipe's region from the body keypoints, or None when the torso has no length."""
    xy, conf = keypoints[:, :2].astype(np.float64), keypoints[:, 2]
    hip = xy[[L_HIP, R_HIP]].mean(axis=0)
    up = xy[[L_SHOULDER, R_SHOULDER]].mean(axis=0) - hip
    torso = float(np.linalg.norm(up))
    if torso < 1e-3:
        return None
    x1, y1, x2, y2 = box.astype(np.float64)
    visible = xy[conf >= min_score]
    # The detector's "body circle" reaches past the head top; the nose/ears are ~10% short of it.
    reach = float(np.max(np.linalg.norm(visible - hip, axis=1))) if len(visible) else 0.0
    radius = max(1.1 * reach, 0.35 * max(x2 - x1, y2 - y1), 1.5 * torso)
    return Region(hip, 2.5 * radius, math.atan2(up[1], up[0]))


def pose_region(box: np.ndarray, keypoints: np.ndarray) -> Region:
    """The region for one dancer: from the torso where its keypoints are sure, from the box where they are not,
    and a continuous blend in between, so a confidence crossing a threshold never makes it jump."""
    fallback = box_region(box)
    torso = torso_region(box, keypoints)
    sure = float(np.min(keypoints[TORSO, 2]))
    weight = min(max((sure - RAMP_LOW) / (RAMP_HIGH - RAMP_LOW), 0.0), 1.0)
    if torso is None or weight == 0.0:
        return fallback
    return fallback.blend(torso, weight)


def region_matrix(region: Region, size: int) -> np.ndarray:
    """2x3 affine from crop pixels (u, v) to frame pixels: the crop's up is the body's up."""
    down = -region.up
    right = np.array([down[1], -down[0]])
    scale = region.side / size
    origin = region.centre - size / 2.0 * scale * (right + down)
    return np.array([[scale * right[0], scale * down[0], origin[0]], [scale * right[1], scale * down[1], origin[1]]])


class BlazePoseLandmarks:
    """BlazePose GHUM full landmark model (256x256 RGB in [0, 1]) on one region; stateless, loaded once."""

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        detail = interpreter.get_input_details()[0]
        self.input_index = detail["index"]
        self.size = int(detail["shape"][1])
        outputs = {tuple(d["shape"]): d["index"] for d in interpreter.get_output_details()}
        self.landmarks_index = outputs[(1, 195)]
        self.flag_index = outputs[(1, 1)]

    def __call__(self, crop: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, float]:
        """(33, 3) landmarks in frame pixels with visibility as the score, and the pose-present probability."""
        rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        self.interpreter.set_tensor(self.input_index, (rgb.astype(np.float32) * (1.0 / 255.0))[None])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.landmarks_index).reshape(-1, 5)[: len(BLAZEPOSE33.keypoints)]
        present = float(self.interpreter.get_tensor(self.flag_index).reshape(-1)[0])
        xy = np.c_[raw[:, :2], np.ones(len(raw))] @ matrix.T
        visibility = 1.0 / (1.0 + np.exp(-raw[:, 3]))
        return np.c_[xy, visibility].astype(np.float32), present


class BlazePose:
    """The accurate profile's pose stage; one instance per video (it remembers each track's region)."""

    skeleton = BLAZEPOSE33
    name = "blazepose-full (33 landmarks, litert)"

    def __init__(self, model: BlazePoseLandmarks, box_margin: float = 0.1, region_smoothing: float = 0.5) -> None:
        self.model = model
        self.box_margin = box_margin
        self.region_smoothing = region_smoothing  # weight of the previous frame's region
        self.regions: dict[int, tuple[int, Region]] = {}  # track id -> (frame, region)
        self.crops = 0
        self.rejected = 0

    def region(self, track_id: int, frame: int, box: np.ndarray, keypoints: np.ndarray) -> Region:
        """This frame's region for a track: the new one, pulled towards the track's region in the frame before."""
        region = pose_region(box, keypoints)
        previous = self.regions.get(track_id)
        if track_id > 0 and previous is not None and previous[0] == frame - 1:
            region = region.blend(previous[1], self.region_smoothing)
        self.regions[track_id] = (frame, region)
        return region

    def crop(self, image: np.ndarray, box: np.ndarray, region: Region) -> tuple[np.ndarray, np.ndarray]:
        size = self.model.size
        matrix = region_matrix(region, size)
        crop = cv2.warpAffine(
            image, matrix, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
        )  # fmt: skip
        # Black out everything outside the dancer's own (slightly grown) box, as the crop's border is:
        # the landmark model follows the most salient person, and a neighbour must not be that person.
        x1, y1, x2, y2 = box.astype(np.float64)
        grow_x, grow_y = self.box_margin * (x2 - x1), self.box_margin * (y2 - y1)
        left, top, right, bottom = x1 - grow_x, y1 - grow_y, x2 + grow_x, y2 + grow_y
        corners = np.array([[left, top], [right, top], [right, bottom], [left, bottom]])
        polygon = np.c_[corners, np.ones(4)] @ cv2.invertAffineTransform(matrix).T
        mask = np.zeros(crop.shape[:2], np.uint8)
        cv2.fillConvexPoly(mask, np.round(polygon).astype(np.int32), 1)
        crop[mask == 0] = 0
        return crop, matrix

    def __call__(self, image: np.ndarray, people: Detections) -> np.ndarray:
        out = np.zeros((len(people), len(BLAZEPOSE33.keypoints), 3), np.float32)
        for i in range(len(people)):
            box, keypoints = people.boxes[i], people.keypoints[i]
            region = self.region(int(people.track_ids[i]), int(people.frames[i]), box, keypoints)
            landmarks, present = self.model(*self.crop(image, box, region))
            self.crops += 1
            if present >= PRESENT:
                out[i] = landmarks
                continue
            self.rejected += 1
            out[i] = keypoints[COCO_OF_BLAZE]
            out[i, ~SHARED_JOINTS, 2] = 0.0
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "crops": self.crops,
            "rejected": self.rejected,
            "fallback": "where BlazePose found no person in the crop, YOLO's keypoints on the 17 shared joints",
        }
