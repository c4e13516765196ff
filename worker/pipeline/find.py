"""Detect + track stage: every person in each frame, with a stable id.

Each frame, `LookPolicy` (worker/pipeline/plan.py) says how to look: the
whole frame at a given input size, or a batch of enlarged crops around the
dancers the tracker expects. The detector's people then go to ByteTrack
(worker/pipeline/track.py), whatever the look, so ids carry across looks.

Crops overlap when dancers stand close. A person cut by a crop's border is
dropped from that crop, since their own crop sees them whole (a border that
is the frame's edge is not a cut). The rest are merged by non-maximum
suppression.
"""

from __future__ import annotations

import cv2
import numpy as np

from worker.pipeline.detect import NUM_KEYPOINTS, PoseDetector, nms
from worker.pipeline.plan import LookPolicy, SearchConfig
from worker.pipeline.records import Detections
from worker.pipeline.track import ByteTracker

# Duplicates of one dancer from two crops overlap less than YOLO's own duplicates (0.7): the crops differ in scale.
CROP_MERGE_IOU = 0.6
# A box this close (crop pixels) to a crop's border was cut by it.
BORDER_PX = 2.0


class FindPeople:
    """The stage: frame in, tracked people out. One instance per video (the tracker and the policy hold state)."""

    def __init__(
        self, detector: PoseDetector, width: int, height: int, fps: float, config: SearchConfig | None = None
    ) -> None:
        self.detector = detector
        self.width, self.height = width, height
        self.tracker = ByteTracker(fps=fps, frame_size=(width, height))
        self.policy = LookPolicy(width, height, fps, config or SearchConfig())

    def __call__(self, image: np.ndarray, frame_index: int) -> Detections:
        look = self.policy.next(frame_index, self.tracker.expected_boxes())
        if look.regions is not None:
            found = self.find_in_crops(image, look.regions, look.imgsz)
        else:
            found = self.detector([image], look.imgsz)[0]
        return self.tracker.update(found).in_frame(frame_index)

    def find_in_crops(self, image: np.ndarray, regions: np.ndarray, size: int) -> Detections:
        """People in square `regions` of `image`, each scaled to `size` px, in one batch; in frame pixels."""
        crops, scales = [], []
        for x1, y1, x2, _ in regions:
            scale = size / (x2 - x1)
            matrix = np.array([[scale, 0.0, -scale * x1], [0.0, scale, -scale * y1]])
            crops.append(
                cv2.warpAffine(
                    image,
                    matrix,
                    (size, size),
                    flags=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT,
                    borderValue=(114, 114, 114),
                )
            )
            scales.append(scale)
        parts = []
        for region, scale, found in zip(regions, scales, self.detector(crops, size), strict=True):
            if not len(found):
                continue
            cut = self._cut_by_crop(found.boxes, region, size)
            found = found[~cut]
            origin = region[:2].astype(np.float32)
            found.boxes = found.boxes / scale + np.tile(origin, 2)
            found.keypoints[..., :2] = found.keypoints[..., :2] / scale + origin
            found.keypoints_raw = found.keypoints.copy()
            parts.append(found)
        merged = Detections.concat(parts, NUM_KEYPOINTS)
        merged.boxes[:, [0, 2]] = merged.boxes[:, [0, 2]].clip(0, self.width)
        merged.boxes[:, [1, 3]] = merged.boxes[:, [1, 3]].clip(0, self.height)
        return merged[nms(merged.boxes, merged.scores, CROP_MERGE_IOU)]

    def _cut_by_crop(self, boxes: np.ndarray, region: np.ndarray, size: int) -> np.ndarray:
        """Which boxes (crop pixels) touch a border of the crop that lies inside the frame."""
        x1, y1, x2, y2 = region
        inside = np.array([x1 > 0, y1 > 0, x2 < self.width, y2 < self.height])
        touches = np.stack(
            [
                boxes[:, 0] <= BORDER_PX,
                boxes[:, 1] <= BORDER_PX,
                boxes[:, 2] >= size - BORDER_PX,
                boxes[:, 3] >= size - BORDER_PX,
            ],
            axis=1,
        )
        return np.any(touches & inside, axis=1)
