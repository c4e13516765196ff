"""The find stage's crops: mapped back to the frame, people cut by a crop dropped, duplicates merged (no model)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from worker.pipeline.find import FindPeople
from worker.pipeline.plan import Crop
from worker.pipeline.records import Detections


class SeeThrough:
    """A fake detector that 'sees' fixed people (frame pixels) through whatever crop it is given."""

    name = "fake"

    def __init__(self, people: np.ndarray, regions: np.ndarray) -> None:
        self.people, self.regions, self.calls = people, regions, []

    def __call__(self, images: Sequence[np.ndarray], imgsz: int) -> list[Detections]:
        self.calls.append((len(images), imgsz))
        out = []
        for (x1, y1, x2, _), image in zip(self.regions, images, strict=True):
            scale = imgsz / (x2 - x1)
            boxes = (self.people - [x1, y1, x1, y1]) * scale
            boxes = boxes.clip(0, image.shape[1])  # as the decoder clips to the crop
            visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes = boxes[visible]
            keypoints = np.zeros((len(boxes), 17, 3))
            keypoints[:, :, :2] = ((boxes[:, :2] + boxes[:, 2:]) / 2)[:, None, :]
            out.append(Detections.create(boxes, np.full(len(boxes), 0.8), keypoints))
        return out


def test_crops_map_back_drop_cut_people_and_merge_duplicates():
    image = np.zeros((720, 1280, 3), np.uint8)
    people = np.array([[100.0, 300.0, 140.0, 400.0], [150.0, 300.0, 190.0, 400.0], [1250.0, 500.0, 1280.0, 600.0]])
    # One crop sees both neighbours whole; a second cuts both (what it sees of them overlaps their whole boxes
    # too little for NMS to merge); a third ends exactly at the frame's right edge, where a person stands.
    regions = np.array([[40.0, 270.0, 200.0, 430.0], [120.0, 250.0, 220.0, 350.0], [1120.0, 470.0, 1280.0, 630.0]])
    detector = SeeThrough(people, regions)
    find = FindPeople(detector, 1280, 720, fps=30)
    found = find.find_in_crops(image, [Crop(region, 192) for region in regions])
    assert detector.calls == [(3, 192)]  # one batch
    assert len(found) == 3
    order = np.argsort(found.boxes[:, 0])
    # Each person once, where they are in the frame; the one cut by the second crop's lower border is dropped
    # there but kept from the first crop, and the frame's own edge does not count as a cut.
    np.testing.assert_allclose(found.boxes[order], people, atol=1e-3)
    np.testing.assert_allclose(found.keypoints[order][:, 0, :2], (people[:, :2] + people[:, 2:]) / 2, atol=1e-3)
