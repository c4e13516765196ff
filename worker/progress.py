"""How a running job reports itself: stage, progress, frames and a heartbeat.

Every write is a compare-and-set that only applies while the job is
`running`, so the same call is also the cancel check: when it does not apply,
the client canceled (or deleted) the job and `JobCanceled` stops the work
within one reporting interval. A background thread keeps `heartbeat_at`
fresh between reports, so a job whose worker died is recognisably stale.
A Redis blip shorter than `blip_seconds` only delays a report: the write is
retried, and the job goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

import redis

from shared.errors import ErrorCode, JobCanceled, ServiceError
from shared.jobs import JobKind, JobStage, JobStore, now
from shared.metrics import StageTiming

log = logging.getLogger(__name__)

# Share of the whole job each stage takes, for one progress figure from 0 to 1, per kind of job.
STAGE_SPANS: dict[JobKind, dict[JobStage, tuple[float, float]]] = {
    JobKind.ANALYSIS: {
        JobStage.FETCHING: (0.00, 0.03),
        JobStage.PROBING: (0.03, 0.04),
        JobStage.LISTENING: (0.04, 0.05),
        JobStage.ANALYZING: (0.05, 0.60),
        JobStage.RENDERING: (0.60, 0.92),
        JobStage.EXPORTING: (0.92, 0.95),
        JobStage.UPLOADING: (0.95, 1.00),
    },
    JobKind.COMPARISON: {
        JobStage.FETCHING: (0.00, 0.10),
        JobStage.ALIGNING: (0.10, 0.15),
        JobStage.RENDERING: (0.15, 0.92),
        JobStage.EXPORTING: (0.92, 0.93),
        JobStage.UPLOADING: (0.93, 1.00),
    },
}


class JobReporter:
    def __init__(
        self,
        store: JobStore,
        job_id: str,
        *,
        every_frames: int,
        kind: JobKind = JobKind.ANALYSIS,
        min_interval: float = 0.25,
        heartbeat_seconds: float = 5.0,
        blip_seconds: float = 30.0,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.every_frames = every_frames
        self.spans = STAGE_SPANS[kind]
        self.min_interval = min_interval
        self.heartbeat_seconds = heartbeat_seconds
        self.blip_seconds = blip_seconds
        self.stage = JobStage.QUEUED
        self.frames_total = 0
        self.deadline: float | None = None
        # Every stage completed so far, with its duration (for /metrics, shared/metrics.py).
        self.timings: list[StageTiming] = []
        self._stage_started: float | None = None
        self._last_report = 0.0
        self._canceled = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    # --- lifecycle ------------------------------------------------------------
    def __enter__(self) -> JobReporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                if not self.store.report(self.job_id, heartbeat_at=now()):
                    self._canceled.set()
            except Exception:
                continue

    # --- reporting ------------------------------------------------------------
    def save(self, **fields: object) -> None:
        """Other fields of the running job (what the probe found), through the same blip-tolerant write."""
        self._write(**fields)

    def _write(self, **fields: object) -> None:
        if self._canceled.is_set() or not self._report(heartbeat_at=now(), **fields):
            self._canceled.set()
            raise JobCanceled(self.job_id)

    def _report(self, **fields: object) -> bool:
        """`store.report`, retried through a Redis outage of up to `blip_seconds`."""
        give_up = time.monotonic() + self.blip_seconds
        while True:
            try:
                return self.store.report(self.job_id, **fields)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if time.monotonic() > give_up:
                    raise
                log.warning("job %s: Redis unavailable (%s); retrying the progress report", self.job_id, exc)
                time.sleep(1.0)

    def is_canceled(self) -> bool:
        """Whether the heartbeat found the job no longer running (canceled, deleted or released)."""
        return self._canceled.is_set()

    def check(self) -> None:
        """Raise when the job was canceled or ran out of time."""
        if self._canceled.is_set():
            raise JobCanceled(self.job_id)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise ServiceError(
                ErrorCode.JOB_TIMEOUT,
                "The analysis took longer than this video's time budget and was stopped.",
            )

    def enter(self, stage: JobStage, frames_total: int | None = None) -> None:
        """Start a stage. A frame-by-frame stage (given `frames_total`) counts its frames from 0;
        other stages leave the last frame count as it was. The stage before it counts as completed."""
        self.end_stage()
        self.check()
        self.stage = stage
        self._stage_started = time.monotonic()
        start, _ = self.spans.get(stage, (1.0, 1.0))
        fields: dict[str, object] = {"stage": stage, "progress": round(start, 4)}
        if frames_total is not None:
            self.frames_total = frames_total
            fields.update(frames_done=0, frames_total=frames_total)
        self._write(**fields)
        self._last_report = time.monotonic()

    def end_stage(self) -> None:
        """The current stage completed: its time goes into `timings` (entering the next stage does it too)."""
        if self._stage_started is not None:
            frames = self.frames_total if self.stage in (JobStage.ANALYZING, JobStage.RENDERING) else 0
            self.timings.append(StageTiming(self.stage.value, time.monotonic() - self._stage_started, frames))
        self._stage_started = None

    def drop_stage(self) -> None:
        """The current stage was cut short (the stages run again after an outage): it is not timed."""
        self._stage_started = None

    def frames(self, frames_done: int) -> None:
        """Progress within a frame-by-frame stage; cheap to call on every frame."""
        last = frames_done >= self.frames_total > 0
        if frames_done % self.every_frames and not last:
            return
        self.check()
        moment = time.monotonic()
        if moment - self._last_report < self.min_interval and not last:
            return
        self._last_report = moment
        start, end = self.spans.get(self.stage, (0.0, 1.0))
        share = min(frames_done / self.frames_total, 1.0) if self.frames_total else 0.0
        self._write(progress=round(start + (end - start) * share, 4), frames_done=frames_done)
