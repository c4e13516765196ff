"""shared/metrics.py on fakeredis: what is written, what /metrics makes of it, and that a failure
to write is only logged."""

from __future__ import annotations

import logging
import time

import fakeredis
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from shared.keys import RedisKeys
from shared.metrics import JOB_DURATION, STAGE_DURATION, Metrics, Observation, StageTiming, render
from shared.presence import WorkerPresence

KEYS = RedisKeys("test")


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def samples(client: redis.Redis, queue: str = "analysis") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render(client, KEYS, queue).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert isinstance(sample, Sample)
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_an_empty_service_exposes_every_family_at_zero(client: fakeredis.FakeRedis) -> None:
    found = samples(client)
    assert found[("dance_jobs", (("status", "queued"),))] == 0
    assert found[("dance_queue_jobs", (("queue", "analysis"), ("state", "queued")))] == 0
    assert found[("dance_workers", ())] == 0 and found[("dance_workers_busy", ())] == 0
    assert found[("dance_upload_bytes_total", ())] == 0 and found[("dance_uploads_total", ())] == 0


def test_histograms_are_cumulative_with_sum_and_count(client: fakeredis.FakeRedis) -> None:
    metrics = Metrics(client, KEYS)
    assert metrics.record([Observation(STAGE_DURATION, value, ("analyzing",)) for value in (0.3, 0.5, 7, 4000)])
    found = samples(client)

    def bucket(le: str) -> float:
        return found[("dance_stage_duration_seconds_bucket", (("le", le), ("stage", "analyzing")))]

    assert (bucket("0.25"), bucket("0.5"), bucket("5.0"), bucket("10.0"), bucket("3600.0"), bucket("+Inf")) == (
        0, 2, 2, 3, 3, 4,
    )  # fmt: skip
    assert found[("dance_stage_duration_seconds_count", (("stage", "analyzing"),))] == 4
    assert found[("dance_stage_duration_seconds_sum", (("stage", "analyzing"),))] == pytest.approx(4007.8)


def test_a_finished_job_gives_its_durations_stages_and_fps(client: fakeredis.FakeRedis) -> None:
    metrics = Metrics(client, KEYS)
    stages = [
        StageTiming("fetching", 0.2),
        StageTiming("analyzing", 4.0, frames=120),
        StageTiming("rendering", 2.0, 120),
    ]
    assert metrics.job_done(status="succeeded", waited_seconds=9.0, run_seconds=7.0, stages=stages, profile="fast")
    assert metrics.job_done(status="failed", waited_seconds=3.0, run_seconds=None, stages=[StageTiming("fetching", 1)])
    found = samples(client)
    assert found[("dance_job_duration_seconds_count", (("status", "succeeded"),))] == 1
    assert found[("dance_job_duration_seconds_sum", (("status", "succeeded"),))] == 9.0
    assert found[("dance_job_run_seconds_sum", (("status", "succeeded"),))] == 7.0
    assert ("dance_job_run_seconds_count", (("status", "failed"),)) not in found
    assert found[("dance_stage_duration_seconds_count", (("stage", "fetching"),))] == 2
    # 120 frames in 4 s of analysis: 30 fps; rendering is not analysis.
    assert found[("dance_analysis_frames_per_second_sum", (("profile", "fast"),))] == 30.0
    assert found[("dance_analysis_frames_per_second_count", (("profile", "fast"),))] == 1


def test_uploads_count_bytes(client: fakeredis.FakeRedis) -> None:
    metrics = Metrics(client, KEYS)
    metrics.uploaded(1000)
    metrics.uploaded(2345)
    found = samples(client)
    assert found[("dance_upload_bytes_total", ())] == 3345
    assert found[("dance_uploads_total", ())] == 2


def test_values_that_are_not_finite_or_badly_labelled_are_dropped(client: fakeredis.FakeRedis) -> None:
    metrics = Metrics(client, KEYS)
    metrics.record([Observation(JOB_DURATION, float("nan"), ("succeeded",)), Observation(JOB_DURATION, 1.0, ())])
    assert client.hgetall(KEYS.metrics()) == {}


def test_a_failure_to_write_is_logged_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    server = fakeredis.FakeServer()
    server.connected = False  # every command fails with ConnectionError
    down = fakeredis.FakeRedis(server=server)
    with caplog.at_level(logging.WARNING, logger="shared.metrics"):
        assert Metrics(down, KEYS).job_done(status="succeeded", waited_seconds=1.0, run_seconds=1.0) is False
        assert Metrics(down, KEYS).uploaded(10) is False
    assert "metrics not recorded" in caplog.text


def test_queues_and_workers(client: fakeredis.FakeRedis) -> None:
    client.rpush("rq:queue:analysis", "a", "b")
    client.sadd("rq:queues", "rq:queue:analysis", "rq:queue:other")
    client.zadd("rq:failed:analysis", {"c": time.time()})
    idle = WorkerPresence(client, KEYS, "idle-worker", ttl_seconds=15)
    busy = WorkerPresence(client, KEYS, "busy-worker", ttl_seconds=15)
    gone = WorkerPresence(client, KEYS, "gone-worker", ttl_seconds=15)
    for presence in (idle, busy, gone):
        presence.refresh()
    busy.hold("e" * 32)
    client.delete(KEYS.worker("gone-worker"))  # its key expired: SIGKILL, a lost machine
    found = samples(client)
    assert found[("dance_queue_jobs", (("queue", "analysis"), ("state", "queued")))] == 2
    assert found[("dance_queue_jobs", (("queue", "analysis"), ("state", "failed")))] == 1
    assert found[("dance_queue_jobs", (("queue", "other"), ("state", "queued")))] == 0
    assert (found[("dance_workers", ())], found[("dance_workers_busy", ())]) == (2, 1)
