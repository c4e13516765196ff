"""Keypoint layouts: names in model order and the edges drawn between them.

`coco17` is what YOLO pose models (and mock mode) produce; `blazepose33` is
MediaPipe BlazePose's layout, used by the `accurate` profile.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Skeleton:
    name: str
    keypoints: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]

    def index(self, keypoint: str) -> int:
        return self.keypoints.index(keypoint)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "keypoints": list(self.keypoints), "edges": [list(edge) for edge in self.edges]}


# fmt: off
COCO17 = Skeleton(
    name="coco17",
    keypoints=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    edges=(
        (0, 1), (0, 2), (1, 3), (2, 4),
        (5, 6), (5, 7), (7, 9), (6, 8), (8, 10),
        (5, 11), (6, 12), (11, 12),
        (11, 13), (13, 15), (12, 14), (14, 16),
    ),
)

BLAZEPOSE33 = Skeleton(
    name="blazepose33",
    keypoints=(
        "nose", "left_eye_inner", "left_eye", "left_eye_outer",
        "right_eye_inner", "right_eye", "right_eye_outer",
        "left_ear", "right_ear", "mouth_left", "mouth_right",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_pinky", "right_pinky",
        "left_index", "right_index", "left_thumb", "right_thumb",
        "left_hip", "right_hip", "left_knee", "right_knee",
        "left_ankle", "right_ankle", "left_heel", "right_heel",
        "left_foot_index", "right_foot_index",
    ),
    edges=(
        (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10),
        (11, 12), (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19),
        (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20),
        (11, 23), (12, 24), (23, 24),
        (23, 25), (24, 26), (25, 27), (26, 28), (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32),
    ),
)

# fmt: on

SKELETONS = {skeleton.name: skeleton for skeleton in (COCO17, BLAZEPOSE33)}

# Joints whose angle the metrics report: (name, (a, vertex, b)) by keypoint name.
ANGLE_JOINTS: tuple[tuple[str, tuple[str, str, str]], ...] = (
    ("left_elbow", ("left_shoulder", "left_elbow", "left_wrist")),
    ("right_elbow", ("right_shoulder", "right_elbow", "right_wrist")),
    ("left_shoulder", ("left_elbow", "left_shoulder", "left_hip")),
    ("right_shoulder", ("right_elbow", "right_shoulder", "right_hip")),
    ("left_hip", ("left_shoulder", "left_hip", "left_knee")),
    ("right_hip", ("right_shoulder", "right_hip", "right_knee")),
    ("left_knee", ("left_hip", "left_knee", "left_ankle")),
    ("right_knee", ("right_hip", "right_knee", "right_ankle")),
)

# Keypoints whose speed the metrics report.
SPEED_KEYPOINTS: tuple[str, ...] = ("left_wrist", "right_wrist", "left_ankle", "right_ankle")
