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

from collections.abc import Sequence

import cv2
import numpy as np

from worker.pipeline.detect import NUM_KEYPOINTS, PoseDetector, nms
from worker.pipeline.plan import Crop, LookPolicy, SearchConfig
from worker.pipeline.records import Detections
from worker.pipeline.track import ByteTracker

# Duplicates of one dancer from two crops overlap less than YOLO's own duplicates (0.7): the crops differ in scale.
CROP_MERGE_IOU = 0.6
# A box this close (crop pixels) to a crop's border was cut by it.
BORDER_PX = 2.0


def warp(image: np.ndarray, region: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """The square `region` of `image` (frame pixels; it may reach past the frame, filled grey as letterboxing
    is) scaled to `size` x `size`, and the scale."""
    x1, y1, x2, _ = region
    scale = size / (x2 - x1)
    matrix = np.array([[scale, 0.0, -scale * x1], [0.0, scale, -scale * y1]])
    flags, border = cv2.INTER_LINEAR, (114, 114, 114)
    return cv2.warpAffine(image, matrix, (size, size), flags=flags, borderValue=border), scale


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
        expected = self.tracker.expected_boxes()
        # A dancer lost beyond the frame's edge is not looked for there: the careful looks will see them return.
        in_view = (expected[:, 2] > 0) & (expected[:, 0] < self.width)
        in_view &= (expected[:, 3] > 0) & (expected[:, 1] < self.height)
        look = self.policy.next(frame_index, expected[in_view])
        found = self.find_in_crops(image, look.crops) if look.crops else self.detector([image], look.imgsz)[0]
        return self.tracker.update(found).in_frame(frame_index)

    def find_in_crops(self, image: np.ndarray, crops: Sequence[Crop]) -> Detections:
        """People in the square `crops` of `image`, each crop at its own input size (one batch per size),
        in frame pixels."""
        parts = []
        for size in sorted({crop.imgsz for crop in crops}):
            regions = [crop.region for crop in crops if crop.imgsz == size]
            warped = [warp(image, region, size) for region in regions]
            found_in = self.detector([crop_image for crop_image, _ in warped], size)
            for region, (_, scale), found in zip(regions, warped, found_in, strict=True):
                found = found[~self._cut_by_crop(found.boxes, region, size)]
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
