"""Real analysis: decode -> detect + track -> pose, frame by frame, with real models.

Models load once in `RealAnalyzer.__init__` (the worker calls `load_analyzer`
once at start), so a missing or broken model stops the worker at start with
MODEL_UNAVAILABLE instead of failing a job halfway. Per job only the tracker
is new. Decoding runs one frame ahead in a background thread (PyAV releases
the GIL while decoding and converting), overlapping the inference; memory
stays flat: only the poses are kept, never the frames.

Profiles (CPU figures on 2 cores, see bench/bench_analysis.py):
- fast: YOLO11n-pose at 384 px (long side), its 17 COCO keypoints.
- accurate: YOLO11n-pose at 384 px for boxes and tracks, then BlazePose full
  (33 landmarks) on each tracked dancer's crop.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.settings import Settings
from worker.analysis.base import Profile
from worker.models.runtime import LoadedModels, load_models
from worker.pipeline.decode import DecodedFrame, decode_frames
from worker.pipeline.detect_track import DetectTrack, OnnxPoseDetector, TorchPoseDetector
from worker.pipeline.pose import BlazePoseLandmarks, PoseEstimator, YoloKeypoints
from worker.pipeline.records import Detection, FramePoses, PoseSequence, ProgressFn, VideoInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileConfig:
    imgsz: int  # long side of the YOLO input
    pose: str  # "yolo" | "blazepose"


PROFILES: dict[str, ProfileConfig] = {
    "fast": ProfileConfig(imgsz=384, pose="yolo"),
    # BlazePose gives the keypoints here; YOLO only needs to find and follow the dancers.
    "accurate": ProfileConfig(imgsz=384, pose="blazepose"),
}
# A GPU has time to spare: full resolution for the detector.
GPU_IMGSZ = 640
TRACKER = "bytetrack"


_END = object()


def prefetch(frames: Iterator[DecodedFrame], depth: int = 3) -> Iterator[DecodedFrame]:
    """Run `frames` in a background thread, `depth` frames ahead; closes it if the consumer stops early."""
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in frames:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
            else:
                slots.put(_END)
        except BaseException as exc:  # handed to the consumer
            slots.put(exc)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="decode-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                slots.get(timeout=0.05)
        thread.join()


class RealAnalyzer:
    def __init__(self, settings: Settings | None = None, models: LoadedModels | None = None) -> None:
        device = settings.device if settings is not None else "auto"
        self.models = models if models is not None else load_models(device)
        self.yolo_keypoints = YoloKeypoints()
        self.blazepose = BlazePoseLandmarks(self.models.blazepose)

    @property
    def device(self) -> str:
        return self.models.device

    def detector(self, profile: Profile) -> Any:
        config = PROFILES[profile]
        if self.models.yolo_backend == "onnxruntime":
            return OnnxPoseDetector(self.models.yolo, imgsz=config.imgsz)
        return TorchPoseDetector(self.models.yolo, self.models.device, imgsz=max(config.imgsz, GPU_IMGSZ))

    def pose_estimator(self, profile: Profile) -> PoseEstimator:
        return self.blazepose if PROFILES[profile].pose == "blazepose" else self.yolo_keypoints

    def generator(self, profile: Profile, detector: Any, pose: PoseEstimator) -> dict[str, str | None]:
        return {
            "mode": "real",
            "profile": profile,
            "detector": f"yolo11n-pose@{detector.imgsz} ({self.models.yolo_backend})",
            "pose_model": pose.name,
            "tracker": TRACKER,
            "smoothing": None,  # the smooth stage fills this in
            "device": self.models.device,
        }

    def analyze(self, video: VideoInfo, profile: Profile, progress: ProgressFn) -> PoseSequence:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}")
        detector = self.detector(profile)
        stage = DetectTrack(detector, fps=video.fps)
        pose = self.pose_estimator(profile)
        frames: list[FramePoses] = []
        for frame in prefetch(decode_frames(video.path, video.rotation)):
            people = stage(frame.image)
            keypoints = pose(frame.image, people)
            detections = [
                Detection(
                    track_id=person.track_id,
                    box=person.box,
                    score=person.score,
                    keypoints=kps,
                    keypoints_raw=kps.copy(),
                )
                for person, kps in zip(people, keypoints, strict=True)
            ]
            frames.append(FramePoses(index=frame.index, time=frame.time, detections=detections))
            progress(len(frames))
        return PoseSequence(skeleton=pose.skeleton, frames=frames, generator=self.generator(profile, detector, pose))
