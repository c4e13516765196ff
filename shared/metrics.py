"""What `GET /metrics` tells Prometheus, kept in Redis so every process sees the same figures.

The API may run as several processes and workers are separate processes or
containers, so nothing is counted in process memory: a worker writes what it
observed about a job into one Redis hash when the job ends (`Metrics.job_done`),
the API adds the bytes of each upload (`Metrics.uploaded`), and `render`
builds the Prometheus text from that hash plus what Redis already knows
(RQ's queues and registries, the per-status job index, the workers' presence)
in four round trips.

    {prefix}:metrics  (hash)
        {histogram}|{label values as JSON}|{le}   observations in that bucket (not cumulative)
        {histogram}|{label values as JSON}|sum    their sum;   ...|count  their number
        {counter}                                 its value

A metric that cannot be written is logged and dropped: it never fails a job
nor an upload.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
from rq.queue import Queue
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from shared.jobs import JobStatus
from shared.keys import RedisKeys
from shared.presence import LiveWorker, live_workers

if TYPE_CHECKING:
    from prometheus_client.core import Metric

log = logging.getLogger(__name__)

NAMESPACE = "dance"


@dataclass(frozen=True)
class Histogram:
    name: str
    documentation: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]  # upper bounds, ascending; +Inf is implied

    def bucket_of(self, value: float) -> str:
        for bound in self.buckets:
            if value <= bound:
                return _le(bound)
        return "+Inf"


@dataclass(frozen=True)
class Counter:
    name: str  # without the `_total` that the exposition adds
    documentation: str


_JOB_SECONDS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
_STAGE_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
_FPS = (1, 2, 5, 10, 15, 20, 25, 30, 45, 60, 90, 120, 240, 480)

JOB_DURATION = Histogram(
    f"{NAMESPACE}_job_duration_seconds",
    "Time from the upload being accepted to the job's final status, by that status (what a client waits).",
    ("status",),
    _JOB_SECONDS,
)
JOB_RUN = Histogram(
    f"{NAMESPACE}_job_run_seconds",
    "Time from a worker starting the job's last run to its final status, by that status.",
    ("status",),
    _JOB_SECONDS,
)
STAGE_DURATION = Histogram(
    f"{NAMESPACE}_stage_duration_seconds",
    "Time each completed stage of a job run took (fetching, probing, listening, analyzing, aligning, rendering, "
    "exporting, uploading).",
    ("stage",),
    _STAGE_SECONDS,
)
ANALYSIS_FPS = Histogram(
    f"{NAMESPACE}_analysis_frames_per_second",
    "Video frames per second of the analyzing stage (decode, detect, track, pose, smooth, metrics), by profile.",
    ("profile",),
    _FPS,
)
HISTOGRAMS = (JOB_DURATION, JOB_RUN, STAGE_DURATION, ANALYSIS_FPS)

UPLOAD_BYTES = Counter(f"{NAMESPACE}_upload_bytes", "Bytes of uploaded videos stored (accepted or not later on).")
UPLOADS = Counter(f"{NAMESPACE}_uploads", "Uploaded videos stored completely.")
COUNTERS = (UPLOAD_BYTES, UPLOADS)

# RQ's view of a queue: the list of queued jobs, then one registry per state.
RQ_REGISTRIES = {
    "started": StartedJobRegistry,
    "deferred": DeferredJobRegistry,
    "scheduled": ScheduledJobRegistry,
    "failed": FailedJobRegistry,
    "finished": FinishedJobRegistry,
    "canceled": CanceledJobRegistry,
}
QUEUE_STATES = ("queued", *RQ_REGISTRIES)


def _le(bound: float) -> str:
    """A bucket bound the way Prometheus writes it (1.0, 2.5, +Inf)."""
    if math.isinf(bound):
        return "+Inf"
    return repr(float(bound))


def _labels(values: Sequence[str]) -> str:
    return json.dumps(list(values), separators=(",", ":"))


# --- writing: workers and the API ------------------------------------------------------------


@dataclass(frozen=True)
class StageTiming:
    """One completed stage of a job run: how long it took and, for a frame-by-frame stage, its frames."""

    stage: str
    seconds: float
    frames: int = 0


@dataclass(frozen=True)
class Observation:
    histogram: Histogram
    value: float
    labels: tuple[str, ...] = ()


class Metrics:
    """Adds observations to the shared hash. Never raises: a failure is logged and the figures dropped."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self.redis = client
        self.key = keys.metrics()

    def record(self, observations: Iterable[Observation] = (), counters: Mapping[Counter, float] | None = None) -> bool:
        """Write everything in one round trip; False (and a warning in the log) when it could not be written."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            for item in observations:
                if not math.isfinite(item.value) or len(item.labels) != len(item.histogram.labels):
                    log.warning("metric %s: dropped %r %r", item.histogram.name, item.value, item.labels)
                    continue
                base = f"{item.histogram.name}|{_labels(item.labels)}|"
                pipe.hincrby(self.key, base + item.histogram.bucket_of(item.value), 1)
                pipe.hincrby(self.key, base + "count", 1)
                pipe.hincrbyfloat(self.key, base + "sum", item.value)
            for counter, amount in (counters or {}).items():
                if amount == int(amount):
                    pipe.hincrby(self.key, counter.name, int(amount))
                else:
                    pipe.hincrbyfloat(self.key, counter.name, amount)
            pipe.execute()
        except Exception as exc:  # Redis down or anything else: figures are not worth a failed job
            log.warning("metrics not recorded: %s", exc)
            return False
        return True

    def uploaded(self, size_bytes: int) -> bool:
        return self.record(counters={UPLOAD_BYTES: size_bytes, UPLOADS: 1})

    def job_done(
        self,
        *,
        status: str,
        waited_seconds: float | None,
        run_seconds: float | None,
        stages: Iterable[StageTiming] = (),
        profile: str = "",
    ) -> bool:
        """A job run that ended: its durations, every stage it completed, and the analysis fps."""
        items: list[Observation] = []
        if waited_seconds is not None:
            items.append(Observation(JOB_DURATION, waited_seconds, (status,)))
        if run_seconds is not None:
            items.append(Observation(JOB_RUN, run_seconds, (status,)))
        for timing in stages:
            items.append(Observation(STAGE_DURATION, timing.seconds, (timing.stage,)))
            if timing.stage == "analyzing" and timing.frames > 0 and timing.seconds > 0:
                items.append(Observation(ANALYSIS_FPS, timing.frames / timing.seconds, (profile,)))
        return self.record(items)


# --- reading: what Redis knows ----------------------------------------------------------------


@dataclass
class QueueDepth:
    name: str
    counts: dict[str, int]  # QUEUE_STATES -> jobs


@dataclass
class Snapshot:
    """Everything `/metrics` and `shared.overview` show, read in a few pipelined round trips."""

    queues: list[QueueDepth]
    jobs: dict[str, int]  # status -> job records
    workers: list[LiveWorker]
    stored: dict[str, str] = field(default_factory=dict)  # the metrics hash


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def read_snapshot(client: redis.Redis, keys: RedisKeys, queue_name: str, *, with_stored: bool = True) -> Snapshot:
    """RQ's queues (every registered one, and `queue_name` even before its first job), the job
    records by status, the live workers and (with_stored) the metrics hash."""
    pipe = client.pipeline(transaction=False)
    pipe.smembers(Queue.redis_queues_keys)
    for status in JobStatus:
        pipe.zcard(keys.jobs_in(status.value))
    if with_stored:
        pipe.hgetall(keys.metrics())
    first: list[Any] = pipe.execute()
    queue_keys, counts = first[0], first[1 : 1 + len(JobStatus)]
    stored = {_text(k): _text(v) for k, v in first[-1].items()} if with_stored else {}
    prefix = Queue.redis_queue_namespace_prefix
    names = {_text(key).removeprefix(prefix) for key in queue_keys} | {queue_name}

    queues = sorted(names)
    pipe = client.pipeline(transaction=False)
    for name in queues:
        pipe.llen(prefix + name)
        for registry in RQ_REGISTRIES.values():
            pipe.zcard(registry.key_template.format(name))
    depths: list[int] = pipe.execute()
    width = len(QUEUE_STATES)
    return Snapshot(
        queues=[
            QueueDepth(name, dict(zip(QUEUE_STATES, depths[i * width : (i + 1) * width], strict=True)))
            for i, name in enumerate(queues)
        ],
        jobs={status.value: int(count) for status, count in zip(JobStatus, counts, strict=True)},
        workers=live_workers(client, keys),
        stored=stored,
    )


# --- the exposition ---------------------------------------------------------------------------


def _stored_histograms(stored: Mapping[str, str]) -> Iterator[tuple[Histogram, tuple[str, ...], dict[str, float]]]:
    """(histogram, label values, {le or "sum" or "count": value}) per label set in the hash."""
    by_name = {h.name: h for h in HISTOGRAMS}
    series: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for name, value in stored.items():
        parts = name.split("|", 1)
        if len(parts) != 2 or parts[0] not in by_name:
            continue
        labels, _, suffix = parts[1].rpartition("|")
        try:
            series[(parts[0], labels)][suffix] = float(value)
        except ValueError:
            continue
    for (name, labels), values in sorted(series.items()):
        histogram = by_name[name]
        try:
            label_values = tuple(str(v) for v in json.loads(labels))
        except ValueError:
            continue
        if len(label_values) == len(histogram.labels):
            yield histogram, label_values, values


def _cumulative(histogram: Histogram, values: Mapping[str, float]) -> list[tuple[str, float]]:
    bounds = {float(le) for le in values if le not in ("sum", "count")} | set(histogram.buckets) | {math.inf}
    running, out = 0.0, []
    for bound in sorted(bounds):
        le = _le(bound)
        running += values.get(le, 0.0)
        out.append((le, running))
    # The count is written with each observation too; a bucket field lost with a failed write must
    # not make +Inf disagree with it.
    out[-1] = ("+Inf", max(running, values.get("count", 0.0)))
    return out


def metric_families(snapshot: Snapshot) -> list[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    queue = GaugeMetricFamily(
        f"{NAMESPACE}_queue_jobs",
        "Jobs in each RQ queue by RQ state: queued (waiting), started, deferred, scheduled, failed, finished...",
        labels=["queue", "state"],
    )
    for depth in snapshot.queues:
        for state in QUEUE_STATES:
            queue.add_metric([depth.name, state], depth.counts[state])
    jobs = GaugeMetricFamily(
        f"{NAMESPACE}_jobs",
        "Job records in each status (finished ones are kept RETENTION_DAYS).",
        labels=["status"],
    )
    for status, count in snapshot.jobs.items():
        jobs.add_metric([status], count)
    workers = GaugeMetricFamily(f"{NAMESPACE}_workers", "Live workers (their presence key is fresh).")
    workers.add_metric([], len(snapshot.workers))
    busy = GaugeMetricFamily(f"{NAMESPACE}_workers_busy", "Live workers running a job.")
    busy.add_metric([], sum(1 for worker in snapshot.workers if worker.job))
    families: list[Metric] = [queue, jobs, workers, busy]

    for counter in COUNTERS:
        family = CounterMetricFamily(counter.name, counter.documentation)
        family.add_metric([], float(snapshot.stored.get(counter.name, 0) or 0))
        families.append(family)

    histograms = {h.name: HistogramMetricFamily(h.name, h.documentation, labels=list(h.labels)) for h in HISTOGRAMS}
    for histogram, label_values, values in _stored_histograms(snapshot.stored):
        histograms[histogram.name].add_metric(
            list(label_values), _cumulative(histogram, values), sum_value=values.get("sum", 0.0)
        )
    families.extend(histograms.values())
    return families


class _SnapshotCollector:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from metric_families(self.snapshot)


def render(client: redis.Redis, keys: RedisKeys, queue_name: str) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of everything above."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(read_snapshot(client, keys, queue_name)))
    return generate_latest(registry)


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
