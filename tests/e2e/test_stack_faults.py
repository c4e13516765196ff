"""The local stack as an operator runs it, broken with real signals: `kill -9` of Redis
and of the worker, then `./manage.sh local start` / the supervisor bring it back.

Every test leaves the stack running and healthy for the tests after it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.e2e.conftest import LocalStack, process_alive
from tests.synthetic import make_clip

# The stack's admin key, sent on every call (the stack runs with API keys, as it does by default).
KEY: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _stack_key(local_stack_info: LocalStack) -> None:
    KEY.update(local_stack_info.headers)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("stack-faults") / "clip.mp4", seconds=8, fps=30, size=(960, 540))


def submit(api: str, clip: Path) -> str:
    with clip.open("rb") as handle:
        files = {"file": (clip.name, handle, "video/mp4")}
        response = httpx.post(f"{api}/analyze", files=files, headers=KEY, timeout=60)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def wait_job(api: str, job_id: str, done: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{api}/jobs/{job_id}", headers=KEY, timeout=10).json()
        if job.get("status") in done:
            return dict(job)
        assert time.monotonic() < deadline, f"job {job_id} still {job.get('status')}"
        time.sleep(0.1)


def worker_child(stack: LocalStack) -> int:
    """The pid of the worker the supervisor runs (an RQ worker in the supervisor's process group)."""
    supervisor = stack.pids()["worker"]
    client = redis.Redis.from_url(stack.urls["redis"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for key in client.smembers("rq:workers:analysis"):
            pid = client.hget(key.decode(), "pid")
            if pid and process_alive(int(pid)) and os.getpgid(int(pid)) == supervisor:
                return int(pid)
        time.sleep(0.1)
    raise AssertionError(f"no worker registered under supervisor {supervisor}\n{stack.log_tails()}")


def test_kill_9_of_redis_then_start_keeps_every_record(local_stack_info: LocalStack, clip: Path) -> None:
    stack, api = local_stack_info, local_stack_info.base_url
    done = submit(api, clip)
    wait_job(api, done, {"succeeded"})
    time.sleep(1.5)  # the append-only file is fsynced every second
    os.kill(stack.pids()["redis"], signal.SIGKILL)
    status = stack.manage("local", "status", check=False)
    assert status.returncode == 3 and "redis      stopped" in status.stdout
    stack.manage("local", "start")
    job = httpx.get(f"{api}/jobs/{done}", headers=KEY, timeout=10).json()
    assert job["status"] == "succeeded" and len(job["results"]) == 5
    # ...and the stack works on: the worker reconnected by itself.
    assert wait_job(api, submit(api, clip), {"succeeded", "failed"})["status"] == "succeeded"


def test_a_killed_worker_is_restarted_and_its_job_finishes(local_stack_info: LocalStack, clip: Path) -> None:
    stack, api = local_stack_info, local_stack_info.base_url
    first = worker_child(stack)
    job_id = submit(api, clip)
    deadline = time.monotonic() + 60
    while httpx.get(f"{api}/jobs/{job_id}", headers=KEY, timeout=10).json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(first, signal.SIGKILL)
    job = wait_job(api, job_id, {"succeeded", "failed"})
    assert job["status"] == "succeeded" and job["attempts"] == 2, job
    assert worker_child(stack) != first
    assert "was killed by SIGKILL" in (stack.local_dir / "logs" / "worker.log").read_text()
    assert stack.manage("local", "status").returncode == 0
