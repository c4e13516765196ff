"""The worker as RQ runs it: a SimpleWorker in this process, real Redis and S3."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rq import SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer

from backend.main import create_app
from shared.queue import get_queue, hard_timeout_seconds
from shared.settings import Settings
from tests.synthetic import make_clip
from worker import tasks
from worker.analysis.mock import MockAnalyzer
from worker.context import build_context, set_context
from worker.timeouts import budget_seconds


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "clip.mp4", seconds=2, fps=15)


def run_worker_once(settings: Settings) -> None:
    context = build_context(settings, analyzer=MockAnalyzer())
    set_context(context)
    worker = SimpleWorker([get_queue(settings, context.redis)], connection=context.redis, serializer=JSONSerializer)
    worker.work(burst=True, with_scheduler=False)


def test_rq_runs_the_job_and_the_budget_follows_the_duration(service_settings: Settings, clip: Path) -> None:
    with TestClient(create_app(service_settings)) as api:
        job_id = api.post("/analyze", files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")}).json()["job_id"]
        rq_job = Job.fetch(job_id, connection=api.app.state.redis, serializer=JSONSerializer)  # type: ignore[attr-defined]
        # Enqueued with the backstop for the longest video allowed, not RQ's 180 s default.
        assert rq_job.timeout == hard_timeout_seconds(service_settings) > 180
        assert rq_job.args == [job_id]  # the payload is the id only, as JSON

        run_worker_once(service_settings)

        assert api.get(f"/jobs/{job_id}").json()["status"] == "succeeded"
        rq_job.refresh()
        assert rq_job.get_status() == "finished"
        # Once probed, the job's own limit was narrowed to base + factor x duration.
        assert rq_job.meta["budget_seconds"] == budget_seconds(service_settings, 2.0)
        assert rq_job.meta["budget_seconds"] < hard_timeout_seconds(service_settings)


def test_a_job_over_its_budget_fails_with_job_timeout(
    service_settings: Settings, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "budget_seconds", lambda settings, duration: 0)
    with TestClient(create_app(service_settings)) as api:
        job_id = api.post("/analyze", files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")}).json()["job_id"]
        run_worker_once(service_settings)
        job = api.get(f"/jobs/{job_id}").json()
        assert job["status"] == "failed"
        assert job["error"]["code"] == "JOB_TIMEOUT"
        assert job["results"] == {}
        rq_job = Job.fetch(job_id, connection=api.app.state.redis, serializer=JSONSerializer)  # type: ignore[attr-defined]
        assert rq_job.get_status() == "failed"  # visible as failed in the RQ dashboard too


def test_a_sweep_releases_the_job_of_a_dead_worker_and_rq_runs_it_again(service_settings: Settings, clip: Path) -> None:
    with TestClient(create_app(service_settings)) as api:
        job_id = api.post("/analyze", files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")}).json()["job_id"]
        context = build_context(service_settings, analyzer=MockAnalyzer())
        # A worker took it from RQ and started it, then vanished (no presence key).
        taken = context.queue.dequeue_any([context.queue], None, connection=context.redis, serializer=JSONSerializer)
        assert taken is not None and context.queue.get_job_ids() == []
        assert context.store.start(job_id, worker="vanished")
        context.store.update(job_id, heartbeat_at=time.time() - service_settings.worker_presence_ttl_seconds - 1)

        report = context.reconciler.sweep()

        assert report.retried == [job_id]
        assert context.queue.get_job_ids() == [job_id]
        run_worker_once(service_settings)
        job = api.get(f"/jobs/{job_id}").json()
        assert (job["status"], job["attempts"]) == ("succeeded", 2)
        assert Job.fetch(job_id, connection=context.redis, serializer=JSONSerializer).get_status() == "finished"
