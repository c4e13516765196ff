"""`python -m shared.overview` against a real Redis holding real jobs in every state: queued in
RQ, running on a live worker, succeeded, failed with codes, canceled."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from shared.errors import ErrorCode, ServiceError
from shared.jobs import JobRecord, JobStore
from shared.keys import RedisKeys
from shared.overview import gather, main, render_text
from shared.presence import WorkerPresence
from shared.queue import enqueue_job, get_queue
from shared.settings import Settings
from tests.processes import ROOT, env_for

pytestmark = pytest.mark.service


@pytest.fixture
def busy_service(service_settings: Settings) -> Iterator[dict[str, Any]]:
    """Two queued jobs (in RQ too), one running on a live worker, one succeeded, three failed
    (at different times), one canceled, and an idle second worker."""
    client = redis.Redis.from_url(service_settings.redis_url)
    keys = RedisKeys(service_settings.key_prefix)
    store = JobStore(client, keys)
    queue = get_queue(service_settings, client)

    def new_job(index: int) -> str:
        job_id = f"{index:032x}"
        store.create(JobRecord(job_id=job_id, created_at=time.time() - 100 + index, filename=f"clip{index}.mp4"))
        return job_id

    queued = [new_job(i) for i in (1, 2)]
    for job_id in queued:
        enqueue_job(queue, service_settings, job_id)
    running, done, canceled = new_job(3), new_job(4), new_job(5)
    busy = WorkerPresence(client, keys, "worker-busy", ttl_seconds=15)
    idle = WorkerPresence(client, keys, "worker-idle", ttl_seconds=15)
    busy.start()
    idle.start()
    busy.hold(running)
    assert store.start(running, "worker-busy")
    assert store.start(done, "worker-idle") and store.succeed(done, [], frames_done=10)
    assert store.cancel(canceled)
    failures = {}
    for index, code, message in [
        (6, ErrorCode.INVALID_VIDEO, "The file is not a video we can read."),
        (7, ErrorCode.VIDEO_TOO_LONG, "The video is 2 h long;\nthe limit is 30 min."),
        (8, ErrorCode.WORKER_LOST, "The worker running this job stopped."),
    ]:
        job_id = new_job(index)
        assert store.fail(job_id, ServiceError(code, message))
        failures[job_id] = code.value
        time.sleep(0.01)  # distinct failure times: newest first
    try:
        yield {"queued": queued, "running": running, "failures": failures, "settings": service_settings}
    finally:
        busy.stop()
        idle.stop()


def test_gather_shows_queues_workers_counts_and_failures(busy_service: dict[str, Any]) -> None:
    settings: Settings = busy_service["settings"]
    view = gather(settings, redis.Redis.from_url(settings.redis_url), failures=2)
    queue = next(q for q in view["queues"] if q["name"] == settings.queue_name)
    assert queue["queued"] == 2 and queue["failed"] == 0
    assert view["jobs"] == {"queued": 2, "running": 1, "succeeded": 1, "failed": 3, "canceled": 1}
    workers = {worker["name"]: worker for worker in view["workers"]}
    assert set(workers) == {"worker-busy", "worker-idle"}
    assert (workers["worker-busy"]["state"], workers["worker-busy"]["job"]) == ("busy", busy_service["running"])
    assert (workers["worker-idle"]["state"], workers["worker-idle"]["job"]) == ("idle", None)
    assert all(0 <= worker["heartbeat_age_seconds"] < 15 for worker in workers.values())
    # The two newest, the last one to fail first.
    newest = list(busy_service["failures"])[::-1][:2]
    assert [f["job_id"] for f in view["failures"]] == newest
    assert [f["code"] for f in view["failures"]] == ["WORKER_LOST", "VIDEO_TOO_LONG"]
    assert view["failures"][0]["failed_at"].endswith("Z")


def test_the_text_is_a_readable_table(busy_service: dict[str, Any]) -> None:
    settings: Settings = busy_service["settings"]
    text = render_text(gather(settings, redis.Redis.from_url(settings.redis_url)))
    assert "Workers: 2 live, 1 busy" in text
    assert busy_service["running"] in text
    for code in busy_service["failures"].values():
        assert code in text
    # A message over several lines stays on its row.
    assert "The video is 2 h long; the limit is 30 min." in text
    queue_row = next(line for line in text.splitlines() if line.strip().startswith(settings.queue_name))
    assert queue_row.split()[1] == "2"  # queued


def test_the_command_prints_json_for_scripts(busy_service: dict[str, Any]) -> None:
    settings: Settings = busy_service["settings"]
    done = subprocess.run(
        [sys.executable, "-m", "shared.overview", "--json", "--failures", "1"],
        cwd=ROOT,
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["jobs"]["failed"] == 3 and len(view["failures"]) == 1
    assert view["key_prefix"] == settings.key_prefix


def test_redis_down_is_exit_code_1_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://admin:secret@127.0.0.1:1/0")
    from shared.settings import get_settings

    get_settings.cache_clear()
    try:
        assert main([]) == 1
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert "Redis at redis://127.0.0.1:1/0 is unavailable" in err and "secret" not in err
