"""BlazePose's region of interest moves continuously: no jump when a torso confidence crosses a threshold."""

from __future__ import annotations

import itertools

import numpy as np

from worker.pipeline.pose import TORSO, BlazePose, pose_region

BOX = np.array([500.0, 100.0, 620.0, 500.0])  # a standing dancer 400 px tall


def standing_keypoints(torso_score: float) -> np.ndarray:
    """COCO keypoints of a dancer in BOX, all sure except the torso's four."""
    kps = np.zeros((17, 3))
    ys = np.linspace(130, 480, 17)
    kps[:, 0], kps[:, 1], kps[:, 2] = 560 + 10 * np.sin(np.arange(17)), ys, 0.9
    kps[[5, 6], 1], kps[[11, 12], 1] = 200, 320  # shoulders, hips
    kps[[5, 11], 0], kps[[6, 12], 0] = 590, 530
    kps[TORSO, 2] = torso_score
    return kps


def test_region_changes_smoothly_as_torso_confidence_crosses_the_old_threshold():
    height = BOX[3] - BOX[1]
    regions = [pose_region(BOX, standing_keypoints(s)) for s in np.arange(0.0, 1.0001, 0.01)]
    steps = [
        max(np.linalg.norm(b.centre - a.centre), abs(b.side - a.side)) / height for a, b in itertools.pairwise(regions)
    ]
    # The old code switched from a box square to a hip-centred one at 0.3: one step of ~0.3 box heights.
    assert max(steps) < 0.02, max(steps)
    near = pose_region(BOX, standing_keypoints(0.29)), pose_region(BOX, standing_keypoints(0.31))
    assert np.linalg.norm(near[0].centre - near[1].centre) < 0.02 * height
    # Sure torso: MediaPipe's region on the hip; unsure: a square around the box.
    assert np.allclose(regions[-1].centre, [560, 320]) and np.allclose(regions[0].centre, [560, 300])


def test_each_tracks_region_is_smoothed_over_time():
    stage = BlazePose(model=None)  # type: ignore[arg-type]  # regions need no model
    rng = np.random.default_rng(0)
    raw, smoothed = [], []
    for frame in range(40):
        kps = standing_keypoints(0.9)
        kps[:, :2] += rng.normal(0, 4.0, (17, 2))  # the detector's keypoint noise moves the region
        raw.append(pose_region(BOX, kps).centre)
        smoothed.append(stage.region(track_id=3, frame=frame, box=BOX, keypoints=kps).centre)
    wobble = lambda c: np.abs(np.diff(np.array(c), axis=0)).mean()  # noqa: E731
    assert wobble(smoothed) < 0.7 * wobble(raw)
    # A track seen again after a gap starts from its new region, not from an old one.
    far = BOX + np.array([300.0, 0.0, 300.0, 0.0])
    fresh = stage.region(track_id=3, frame=100, box=far, keypoints=standing_keypoints(0.1))
    assert np.allclose(fresh.centre, pose_region(far, standing_keypoints(0.1)).centre)
