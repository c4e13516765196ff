"""BlazePose's pose-present flag is used: a crop with nobody in it gives no visible landmarks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from shared.skeletons import BLAZEPOSE33, COCO17
from tests.clips import package_photo
from tests.stage import stage_background
from worker.pipeline.records import Detections

pytestmark = pytest.mark.pipeline


def test_empty_crop_is_rejected_and_a_dancer_is_not(models):
    from worker.pipeline.detect import OnnxPoseDetector
    from worker.pipeline.pose import SHARED_JOINTS, BlazePose, BlazePoseLandmarks

    stage = BlazePose(BlazePoseLandmarks(models.blazepose))
    # Nobody: a patch of empty stage, with keypoints a detector might have hallucinated there.
    empty = stage_background((1280, 720))
    ghost = np.zeros((1, 17, 3))
    ghost[0, :, :2] = np.c_[np.full(17, 300.0), np.linspace(200, 400, 17)]
    ghost[0, :, 2] = 0.4
    nobody = Detections.create([[250, 180, 350, 420]], [0.3], ghost, track_ids=[1])
    (landmarks,) = stage(empty, nobody)
    assert stage.summary()["rejected"] == 1
    assert (landmarks[~SHARED_JOINTS, 2] == 0).all()  # hands, feet and face details: not seen
    shared = [COCO17.index(name) for name in BLAZEPOSE33.keypoints if name in COCO17.keypoints]
    np.testing.assert_allclose(landmarks[SHARED_JOINTS], ghost[0, shared])  # the detector's own keypoints

    # Somebody: a real person with the keypoints YOLO gives them.
    image = cv2.imread(str(package_photo("zidane.jpg")))
    people = OnnxPoseDetector(models.yolo)([image], 640)[0]
    people = people[people.scores > 0.5]
    people.track_ids = np.arange(1, len(people) + 1, dtype=np.int32)
    landmarks = stage(image, people)
    assert stage.summary() == {**stage.summary(), "crops": 1 + len(people), "rejected": 1}
    assert (landmarks[:, ~SHARED_JOINTS, 2] > 0.5).mean() > 0.5
