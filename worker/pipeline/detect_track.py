"""Detect + track stage: every person gets a box, 17 COCO keypoints and a stable track id.

Detection is Ultralytics YOLO11n-pose. On the CPU it runs as the ONNX export
on onnxruntime (`OnnxPoseDetector`: letterbox, one inference, confidence
filter, NMS, un-letterbox, all in numpy/OpenCV); on a GPU it runs through
Ultralytics on torch (`TorchPoseDetector`). Both give the same
`PoseDetections` arrays, so one tracker serves both.

Tracking is ByteTrack (Zhang et al. 2022), written here in numpy with `lap`
for the assignment and following Ultralytics' `BYTETracker` step for step
(its defaults: high 0.25 / low 0.1 / new-track 0.25 thresholds, IoU match
0.8 fused with the score, Kalman filter on x, y, aspect, height). The track
buffer is in seconds, not frames, so a dancer hidden behind another for up
to `buffer_seconds` comes back with the same id at any frame rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

NUM_KEYPOINTS = 17


@dataclass
class PoseDetections:
    """People found in one frame, in upright-frame pixels."""

    boxes: np.ndarray  # (N, 4) x1, y1, x2, y2
    scores: np.ndarray  # (N,)
    keypoints: np.ndarray  # (N, 17, 3) x, y, score

    @classmethod
    def empty(cls) -> PoseDetections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, NUM_KEYPOINTS, 3), np.float32)
        )

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class TrackedPerson:
    track_id: int
    box: np.ndarray  # (4,) the detection's box
    score: float
    keypoints: np.ndarray  # (17, 3) COCO keypoints from YOLO


# --------------------------------------------------------------------------- detection


def letterbox(image: np.ndarray, size: int, stride: int = 32) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize so the long side is `size`, pad each side to a multiple of `stride` (grey 114), as Ultralytics does."""
    h, w = image.shape[:2]
    ratio = min(size / h, size / w)
    new_w, new_h = max(1, round(w * ratio)), max(1, round(h * ratio))
    pad_w, pad_h = (-new_w) % stride, (-new_h) % stride
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR) if (new_w, new_h) != (w, h) else image
    left, top = pad_w // 2, pad_h // 2
    padded = cv2.copyMakeBorder(
        resized, top, pad_h - top, left, pad_w - left, cv2.BORDER_CONSTANT, value=(114, 114, 114)
    )
    return padded, ratio, (float(left), float(top))


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first."""
    if len(scores) == 0:
        return np.zeros((0,), np.int64)
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores)
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
    output: np.ndarray, ratio: float, pad: tuple[float, float], frame_shape: tuple[int, int],
    conf: float, iou: float, max_det: int,
) -> PoseDetections:  # fmt: skip
    """(56, A) raw head output (cx, cy, w, h, score, 17 x (x, y, conf)) to frame-pixel detections."""
    pred = output.T  # (A, 56)
    pred = pred[pred[:, 4] > conf]
    if not len(pred):
        return PoseDetections.empty()
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
    fh, fw = frame_shape
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, fw)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, fh)
    return PoseDetections(boxes.astype(np.float32), scores.astype(np.float32), kpts.astype(np.float32))


class OnnxPoseDetector:
    """YOLO11n-pose ONNX (dynamic size) on onnxruntime; `imgsz` is the long side fed to the model."""

    def __init__(self, session: Any, imgsz: int = 384, conf: float = 0.1, iou: float = 0.7, max_det: int = 50) -> None:
        self.session, self.imgsz, self.conf, self.iou, self.max_det = session, imgsz, conf, iou, max_det
        self.input_name = session.get_inputs()[0].name

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, float, tuple[float, float]]:
        padded, ratio, pad = letterbox(image, self.imgsz)
        blob = cv2.dnn.blobFromImage(padded, scalefactor=1 / 255.0, swapRB=True)  # NCHW float32 RGB
        return blob, ratio, pad

    def __call__(self, image: np.ndarray) -> PoseDetections:
        blob, ratio, pad = self.preprocess(image)
        (output,) = self.session.run(None, {self.input_name: blob})
        return decode_yolo_pose(output[0], ratio, pad, image.shape[:2], self.conf, self.iou, self.max_det)


class TorchPoseDetector:
    """YOLO11n-pose through Ultralytics on torch (GPU profiles)."""

    def __init__(
        self, model: Any, device: str, imgsz: int = 640, conf: float = 0.1, iou: float = 0.7, max_det: int = 50
    ) -> None:
        self.model, self.device, self.imgsz, self.conf, self.iou, self.max_det = (
            model,
            device,
            imgsz,
            conf,
            iou,
            max_det,
        )

    def __call__(self, image: np.ndarray) -> PoseDetections:
        result = self.model.predict(
            image, imgsz=self.imgsz, conf=self.conf, iou=self.iou, max_det=self.max_det,
            device=self.device, verbose=False, half=self.device == "cuda",
        )[0]  # fmt: skip
        if result.boxes is None or not len(result.boxes):
            return PoseDetections.empty()
        boxes = result.boxes.xyxy.float().cpu().numpy()
        scores = result.boxes.conf.float().cpu().numpy()
        kpts = result.keypoints.data.float().cpu().numpy()
        return PoseDetections(boxes.astype(np.float32), scores.astype(np.float32), kpts.astype(np.float32))


# --------------------------------------------------------------------------- tracking


class KalmanXYAH:
    """Constant-velocity Kalman filter on (center x, center y, aspect w/h, height), as in ByteTrack."""

    std_pos, std_vel = 1.0 / 20, 1.0 / 160

    def __init__(self) -> None:
        self.F = np.eye(8)
        self.F[:4, 4:] = np.eye(4)
        self.H = np.eye(4, 8)

    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = z[3]
        mean = np.r_[z, np.zeros(4)]
        std = [2 * self.std_pos * h, 2 * self.std_pos * h, 1e-2, 2 * self.std_pos * h,
               10 * self.std_vel * h, 10 * self.std_vel * h, 1e-5, 10 * self.std_vel * h]  # fmt: skip
        return mean, np.diag(np.square(std))

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = mean[3]
        std = [self.std_pos * h, self.std_pos * h, 1e-2, self.std_pos * h,
               self.std_vel * h, self.std_vel * h, 1e-5, self.std_vel * h]  # fmt: skip
        return self.F @ mean, self.F @ cov @ self.F.T + np.diag(np.square(std))

    def update(self, mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = mean[3]
        r = np.diag(np.square([self.std_pos * h, self.std_pos * h, 1e-1, self.std_pos * h]))
        s = self.H @ cov @ self.H.T + r
        gain = np.linalg.solve(s, (cov @ self.H.T).T).T
        mean = mean + gain @ (z - self.H @ mean)
        cov = cov - gain @ s @ gain.T
        return mean, cov


def xyxy_to_xyah(box: np.ndarray) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    return np.array([box[0] + w / 2, box[1] + h / 2, w / max(h, 1e-6), h], dtype=np.float64)


def xyah_to_xyxy(state: np.ndarray) -> np.ndarray:
    cx, cy, a, h = state[:4]
    w = a * h
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def linear_assignment(cost: np.ndarray, thresh: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Minimum-cost matching with costs above `thresh` forbidden: (matches, unmatched rows, unmatched cols)."""
    if cost.size == 0:
        return [], list(range(cost.shape[0])), list(range(cost.shape[1]))
    import lap

    _, x, y = lap.lapjv(cost, extend_cost=True, cost_limit=thresh)
    matches = [(i, int(j)) for i, j in enumerate(x) if j >= 0]
    return matches, [i for i, j in enumerate(x) if j < 0], [j for j, i in enumerate(y) if i < 0]


TRACKED, LOST, REMOVED = 0, 1, 2


@dataclass(eq=False)  # compared by identity
class _Track:
    mean: np.ndarray
    cov: np.ndarray
    score: float
    track_id: int = 0
    state: int = TRACKED
    activated: bool = False
    start_frame: int = 0
    end_frame: int = 0
    det_index: int = -1  # index into this frame's detections when matched this frame
    box: np.ndarray = field(default_factory=lambda: np.zeros(4))

    def xyxy(self) -> np.ndarray:
        return xyah_to_xyxy(self.mean)


class ByteTracker:
    """ByteTrack over `PoseDetections`; returns the detections matched to confirmed tracks, with ids from 1."""

    def __init__(
        self, fps: float = 30.0, high: float = 0.25, low: float = 0.1, new_track: float = 0.25,
        match: float = 0.8, buffer_seconds: float = 2.0, fuse_score: bool = True,
    ) -> None:  # fmt: skip
        self.high, self.low, self.new_track, self.match, self.fuse_score = high, low, new_track, match, fuse_score
        self.max_lost = max(1, round(buffer_seconds * (fps if fps > 0 else 30.0)))
        self.kf = KalmanXYAH()
        self.tracked: list[_Track] = []
        self.lost: list[_Track] = []
        self.frame_id = 0
        self.next_id = 1

    def _new(self, box: np.ndarray, score: float, index: int) -> _Track:
        mean, cov = self.kf.initiate(xyxy_to_xyah(box))
        return _Track(mean=mean, cov=cov, score=score, det_index=index, box=box)

    def _update(self, track: _Track, det: _Track) -> None:
        track.mean, track.cov = self.kf.update(track.mean, track.cov, xyxy_to_xyah(det.box))
        track.state, track.activated, track.score = TRACKED, True, det.score
        track.end_frame, track.det_index, track.box = self.frame_id, det.det_index, det.box

    def _dists(self, tracks: list[_Track], dets: list[_Track], fuse: bool) -> np.ndarray:
        if not tracks or not dets:
            return np.zeros((len(tracks), len(dets)))
        iou = iou_matrix(np.array([t.xyxy() for t in tracks]), np.array([d.box for d in dets]))
        if fuse:
            iou = iou * np.array([d.score for d in dets])[None, :]
        return 1.0 - iou

    def update(self, dets: PoseDetections) -> list[tuple[int, int]]:
        """Feed one frame; returns (track_id, detection index) for every confirmed track seen in it."""
        self.frame_id += 1
        scores = dets.scores
        high = [
            self._new(dets.boxes[i].astype(np.float64), float(scores[i]), int(i))
            for i in np.flatnonzero(scores >= self.high)
        ]
        low_mask = (scores > self.low) & (scores < self.high)
        low = [self._new(dets.boxes[i].astype(np.float64), float(scores[i]), int(i)) for i in np.flatnonzero(low_mask)]

        unconfirmed = [t for t in self.tracked if not t.activated]
        confirmed = [t for t in self.tracked if t.activated]
        pool = confirmed + [t for t in self.lost if t not in confirmed]
        for track in pool:
            if track.state != TRACKED:
                track.mean[7] = 0.0
            track.mean, track.cov = self.kf.predict(track.mean, track.cov)
        for track in pool:
            track.det_index = -1
        activated: list[_Track] = []
        refound: list[_Track] = []
        lost_now: list[_Track] = []

        # 1. high-score detections against every tracked and lost track
        matches, u_track, u_det = linear_assignment(self._dists(pool, high, self.fuse_score), self.match)
        for it, idet in matches:
            track = pool[it]
            (activated if track.state == TRACKED else refound).append(track)
            self._update(track, high[idet])
        # 2. low-score detections against the tracked ones left (occluded, blurred dancers)
        remaining = [pool[i] for i in u_track if pool[i].state == TRACKED]
        matches, u_rem, _ = linear_assignment(self._dists(remaining, low, False), 0.5)
        for it, idet in matches:
            self._update(remaining[it], low[idet])
            activated.append(remaining[it])
        for it in u_rem:
            track = remaining[it]
            if track.state != LOST:
                track.state = LOST
                lost_now.append(track)
        # 3. tracks born last frame get one chance to be confirmed
        left = [high[i] for i in u_det]
        for track in unconfirmed:
            track.det_index = -1
        matches, u_unconf, u_det = linear_assignment(self._dists(unconfirmed, left, self.fuse_score), 0.7)
        for it, idet in matches:
            self._update(unconfirmed[it], left[idet])
            activated.append(unconfirmed[it])
        removed = [unconfirmed[i] for i in u_unconf]
        # 4. new tracks
        for idet in u_det:
            det = left[idet]
            if det.score < self.new_track:
                continue
            det.track_id, self.next_id = self.next_id, self.next_id + 1
            det.state, det.start_frame, det.end_frame = TRACKED, self.frame_id, self.frame_id
            det.activated = self.frame_id == 1
            activated.append(det)
        # 5. forget tracks lost for too long
        for track in self.lost:
            if self.frame_id - track.end_frame > self.max_lost:
                track.state = REMOVED

        tracked = [t for t in self.tracked if t.state == TRACKED and t not in removed]
        for track in activated + refound:
            if track not in tracked:
                tracked.append(track)
        lost = [t for t in self.lost if t.state == LOST and t not in tracked] + [
            t for t in lost_now if t not in tracked
        ]
        tracked, lost = self._drop_duplicates(tracked, [t for t in lost if t.state != REMOVED])
        self.tracked, self.lost = tracked, lost
        return [
            (t.track_id, t.det_index)
            for t in self.tracked
            if t.activated and t.det_index >= 0 and t.end_frame == self.frame_id
        ]

    def _drop_duplicates(self, tracked: list[_Track], lost: list[_Track]) -> tuple[list[_Track], list[_Track]]:
        if not tracked or not lost:
            return tracked, lost
        dist = 1.0 - iou_matrix(np.array([t.xyxy() for t in tracked]), np.array([t.xyxy() for t in lost]))
        drop_t, drop_l = set(), set()
        for p, q in zip(*np.nonzero(dist < 0.15), strict=True):
            age_p = tracked[p].end_frame - tracked[p].start_frame
            age_q = lost[q].end_frame - lost[q].start_frame
            (drop_t.add(p) if age_p <= age_q else drop_l.add(q))
        return [t for i, t in enumerate(tracked) if i not in drop_t], [t for i, t in enumerate(lost) if i not in drop_l]


class DetectTrack:
    """The stage: frame in, tracked people out. One instance per video (the tracker holds state)."""

    def __init__(self, detector: Any, fps: float, **tracker_args: Any) -> None:
        self.detector = detector
        self.tracker = ByteTracker(fps=fps, **tracker_args)

    def __call__(self, image: np.ndarray) -> list[TrackedPerson]:
        dets = self.detector(image)
        people = []
        for track_id, index in self.tracker.update(dets):
            people.append(
                TrackedPerson(
                    track_id, dets.boxes[index].copy(), float(dets.scores[index]), dets.keypoints[index].copy()
                )
            )
        people.sort(key=lambda p: p.track_id)
        return people
