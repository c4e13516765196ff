"""Tracking: ByteTrack gives each person a stable id across frames.

ByteTrack (Zhang et al. 2022), written here in numpy with `lap` for the
assignment and following Ultralytics' `BYTETracker` step for step (its
defaults: high 0.25 / low 0.1 / new-track 0.25 thresholds, IoU match 0.8
fused with the score, Kalman filter on x, y, aspect, height). The track buffer
is in seconds, not frames, so a dancer hidden behind another for up to
`buffer_seconds` comes back with the same id at any frame rate.

It keeps the detection's row with its track, so keypoints stay with their
dancer (the reason this is not `supervision`'s or `trackers`' ByteTrack), and
it says where each live track is expected in the next frame
(`expected_boxes`), which is where the find stage looks for small dancers.

Two additions for dancers at the frame's edge, which IoU matching alone gets
wrong: one who steps out through an edge and back in through the same edge,
within the buffer, gets their id back (`_returning`). And a second box lying
within a person already matched in the frame (YOLO gives cut-off people two)
does not start a new track (`_inside_someone`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from worker.pipeline.records import Detections


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
    """ByteTrack over one frame's `Detections` at a time; track ids start at 1."""

    def __init__(
        self, fps: float = 30.0, high: float = 0.25, low: float = 0.1, new_track: float = 0.25,
        match: float = 0.8, buffer_seconds: float = 2.0, fuse_score: bool = True,
        frame_size: tuple[int, int] | None = None,
    ) -> None:  # fmt: skip
        self.high, self.low, self.new_track, self.match, self.fuse_score = high, low, new_track, match, fuse_score
        self.frame_size = frame_size  # (width, height): enables re-entry through the edge a dancer left by
        self.fps = fps if fps > 0 else 30.0
        self.max_lost = max(1, round(buffer_seconds * self.fps))
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

    def update(self, dets: Detections) -> Detections:
        """Feed one frame's detections; returns the rows matched to confirmed tracks, with their ids, by id."""
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
        # 4. new tracks, unless a dancer is stepping back in where they stepped out
        for idet in u_det:
            det = left[idet]
            if det.score < self.new_track:
                continue
            returning = self._returning(det)
            if returning is not None:
                self._update(returning, det)
                refound.append(returning)
                continue
            if self._inside_someone(det, activated + refound):
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
        seen = sorted(
            (t.track_id, t.det_index)
            for t in self.tracked
            if t.activated and t.det_index >= 0 and t.end_frame == self.frame_id
        )
        people = dets[np.array([index for _, index in seen], np.int64)]
        people.track_ids = np.array([track_id for track_id, _ in seen], np.int32)
        return people

    def expected_boxes(self, max_lost_seconds: float = 0.5) -> np.ndarray:
        """(M, 4) where each live track should be in the next frame: tracked, unconfirmed and briefly lost ones.

        The Kalman filter's prediction of the mean, without touching its state
        (`update` predicts again, as ByteTrack does).
        """
        recent = max(1, round(max_lost_seconds * self.fps))
        live = self.tracked + [t for t in self.lost if self.frame_id - t.end_frame <= recent]
        if not live:
            return np.zeros((0, 4))
        return np.array([xyah_to_xyxy(self.kf.F @ t.mean) for t in live])

    def _edges(self, box: np.ndarray) -> set[str]:
        """The frame edges `box` touches: where a person cut off by the frame, or leaving it, is."""
        if self.frame_size is None:
            return set()
        width, height = self.frame_size
        margin = 0.01 * max(width, height)
        touches = {"left": box[0] <= margin, "top": box[1] <= margin,
                   "right": box[2] >= width - margin, "bottom": box[3] >= height - margin}  # fmt: skip
        return {edge for edge, touching in touches.items() if touching}

    def _returning(self, det: _Track, min_overlap: float = 0.5) -> _Track | None:
        """A confirmed track lost at a frame edge whose extent along that edge overlaps `det`'s, which touches
        the same edge: the dancer who stepped out there, stepping back in. Most recently lost first.

        IoU cannot do this: while a dancer is out of view, the Kalman filter carries their box on beyond the
        edge. Without appearance features a different dancer entering at the same place could take the id;
        on a stage that is rarer than one dancer stepping out of shot and back.
        """
        edges = self._edges(det.box)
        if not edges:
            return None
        for track in sorted(self.lost, key=lambda t: -t.end_frame):
            if track.state != LOST or not track.activated or not edges & self._edges(track.box):
                continue
            along = 1 if edges & {"left", "right"} else 0  # compare y extents on side edges, x on top/bottom
            lo = max(det.box[along], track.box[along])
            hi = min(det.box[along + 2], track.box[along + 2])
            span = min(det.box[along + 2] - det.box[along], track.box[along + 2] - track.box[along])
            if span > 0 and (hi - lo) / span >= min_overlap:
                return track
        return None

    @staticmethod
    def _inside_someone(det: _Track, seen: list[_Track], inside: float = 0.9, iou: float = 0.5) -> bool:
        """Whether `det` and a person matched this frame lie one within the other: a second box on one person
        (YOLO gives them for people cut off by the frame), not a new person."""
        if not seen:
            return False
        boxes = np.array([t.box for t in seen])
        x1, y1 = np.maximum(boxes[:, 0], det.box[0]), np.maximum(boxes[:, 1], det.box[1])
        x2, y2 = np.minimum(boxes[:, 2], det.box[2]), np.minimum(boxes[:, 3], det.box[3])
        overlap = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        area = (det.box[2] - det.box[0]) * (det.box[3] - det.box[1])
        within = overlap / np.maximum(np.minimum(areas, area), 1e-9)
        ious = overlap / np.maximum(areas + area - overlap, 1e-9)
        return bool(np.any((within >= inside) & (ious >= iou)))

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
