"""Real analysis: decode -> find (detect + track) -> pose, frame by frame, with real models.

Models load once in `RealAnalyzer.__init__` (the worker calls `load_analyzer`
once at start), so a missing or broken model stops the worker at start with
MODEL_UNAVAILABLE instead of failing a job halfway. Per job only the stages
that hold state are new: the find stage (tracker and look policy) and the
pose stage (BlazePose's regions per track). Decoding runs one frame ahead in a
background thread (PyAV releases the GIL while decoding and converting),
overlapping the inference. Memory stays flat: only the poses are kept, never
the frames.

How each frame is searched (the whole frame at a chosen size, or enlarged
crops around each dancer) adapts to the dancers' size: worker/pipeline/plan.py.
Profiles (CPU figures on 2 cores, see bench/bench_analysis.py):
- fast: YOLO11n-pose finds the dancers and gives their 17 COCO keypoints.
- accurate: the same, then BlazePose full (33 landmarks) on each dancer's crop.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from shared.profiles import Profile
from shared.settings import Settings
from worker.models.runtime import LoadedModels, load_models
from worker.pipeline.decode import DecodedFrame, decode_frames
from worker.pipeline.detect import OnnxPoseDetector, PoseDetector, TorchPoseDetector
from worker.pipeline.find import FindPeople
from worker.pipeline.plan import SearchConfig
from worker.pipeline.pose import BlazePose, BlazePoseLandmarks, PoseEstimator, YoloKeypoints
from worker.pipeline.records import Detections, PoseSequence, ProgressFn, VideoInfo

if TYPE_CHECKING:
    from worker.pipeline.beats import Beats

log = logging.getLogger(__name__)

TRACKER = "bytetrack"
# A GPU has time to spare: the whole frame is never fed smaller than this there.
GPU_MIN_IMGSZ = 640


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
        self.detector: PoseDetector = (
            OnnxPoseDetector(self.models.yolo)
            if self.models.yolo_backend == "onnxruntime"
            else TorchPoseDetector(self.models.yolo, self.models.device)
        )
        self.landmarks = BlazePoseLandmarks(self.models.blazepose)

    @property
    def device(self) -> str:
        return self.models.device

    def search_config(self) -> SearchConfig:
        return SearchConfig() if self.models.device == "cpu" else SearchConfig(min_imgsz=GPU_MIN_IMGSZ)

    def pose_estimator(self, profile: Profile) -> PoseEstimator:
        """A new pose stage for one video (BlazePose remembers each track's region)."""
        return BlazePose(self.landmarks) if profile is Profile.ACCURATE else YoloKeypoints()

    def analyze(
        self, video: VideoInfo, profile: Profile, progress: ProgressFn, *, music: Beats | None = None
    ) -> PoseSequence:
        find = FindPeople(self.detector, video.width, video.height, video.fps, self.search_config())
        pose = self.pose_estimator(profile)
        frames: list[Detections] = []
        times: list[float] = []
        for frame in prefetch(decode_frames(video.path, video.rotation)):
            people = find(frame.image, frame.index)
            frames.append(people.with_keypoints(pose(frame.image, people)))
            times.append(frame.time)
            progress(len(frames))
        generator: dict[str, Any] = {
            "mode": "real",
            "profile": profile.value,
            "detector": self.detector.name,
            "detection": find.policy.summary(),
            "pose_model": pose.name,
            "pose_presence": pose.summary() if isinstance(pose, BlazePose) else None,
            "tracker": TRACKER,
            "smoothing": None,  # the smooth stage fills this in
            "device": self.models.device,
        }
        return PoseSequence.from_frames(pose.skeleton, times, frames, generator)
