"""The RQ dashboard (`python -m backend.dashboard`) as a real process, and a queue for it to show.

    with running_dashboard(redis_url, workdir) as dashboard:   # dashboard.url, .port, .log_text()
        with queued_job(redis_url) as job:                     # job.queue_name, .job_id, .queued_ids()
            ...

Used by tests/service/test_dashboard.py and tests/browser/test_dashboard.py.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from shared.queue import enqueue_job, get_queue
from shared.settings import Settings
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[1]
USER = "operator"
PASSWORD = secrets.token_hex(16)


def dashboard_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment the dashboard starts with: this Redis and login, no setting of the shell's."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("RQ_DASHBOARD_", "ENVIRONMENT"))}
    env.update(
        REDIS_URL=redis_url,
        RQ_DASHBOARD_USERNAME=USER,
        RQ_DASHBOARD_PASSWORD=PASSWORD,
        ENVIRONMENT="local",
        ALLOWED_HOSTS="localhost,127.0.0.1",
        LOG_FORMAT="text",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def dashboard_command(port: int) -> list[str]:
    return [sys.executable, "-m", "backend.dashboard", "--host", "127.0.0.1", "--port", str(port)]


def login_header(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@dataclass
class Dashboard:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def running_dashboard(redis_url: str, workdir: Path, timeout: float = 30) -> Iterator[Dashboard]:
    """The dashboard on a free port, once it answers; stopped with SIGTERM afterwards (it must stop)."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "dashboard.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            dashboard_command(port), cwd=ROOT, env=dashboard_env(redis_url), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    running = Dashboard(f"http://127.0.0.1:{port}", port, process, log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the dashboard exited ({process.returncode}):\n{running.log_text()}")
            try:
                httpx.get(running.url + "/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    message = f"the dashboard did not answer in {timeout:.0f} s:\n{running.log_text()}"
                    raise AssertionError(message) from None
                time.sleep(0.1)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            raise AssertionError(f"the dashboard did not stop on SIGTERM:\n{running.log_text()}") from None


@dataclass
class QueuedJob:
    queue_name: str
    job_id: str
    connection: redis.Redis

    def queued_ids(self) -> list[str]:
        """What Redis holds in the RQ queue, read directly."""
        return [raw.decode() for raw in self.connection.lrange(f"rq:queue:{self.queue_name}", 0, -1)]


@contextlib.contextmanager
def queued_job(redis_url: str) -> Iterator[QueuedJob]:
    """A queue of its own holding one job, enqueued the way the API enqueues it (JSONSerializer)."""
    settings = Settings(redis_url=redis_url, queue_name=f"test-{uuid.uuid4().hex[:12]}")
    connection = redis.Redis.from_url(settings.redis_url)
    queue = get_queue(settings, connection)
    job_id = uuid.uuid4().hex
    enqueue_job(queue, settings, job_id)
    job = QueuedJob(settings.queue_name, job_id, connection)
    assert job.queued_ids() == [job_id]
    try:
        yield job
    finally:
        queue.delete(delete_jobs=True)
        connection.close()
