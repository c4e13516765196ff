"""The API's worker as a real process, for tests that kill it with real signals.

    with worker_process(settings, tmp, supervised=True) as worker:
        ...  worker.child_pid(), worker.process, worker.log_text()

Settings reach the process the way they reach a deployed worker: as
environment variables (shared/settings.py reads them).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import redis
import uvicorn
from fastapi import FastAPI

from backend.main import create_app
from shared.keys import RedisKeys
from shared.settings import Settings
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[1]


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """Every setting as the environment variable that sets it."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        env[name.upper()] = value.value if isinstance(value, Enum) else str(value)
    env.update({"USE_MOCK_ANALYSIS": "true", "PYTHONUNBUFFERED": "1", **extra})
    return env


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.05) -> object:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    settings: Settings
    name: str

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def presences(self) -> dict[str, dict[str, object]]:
        """Live worker presences in this test's key space: name -> {pid, host, job}."""
        client = redis.Redis.from_url(self.settings.redis_url)
        keys = RedisKeys(self.settings.key_prefix)
        found = {}
        for key in client.scan_iter(keys.worker("*")):
            raw = client.get(key)
            if raw:
                found[key.decode().rsplit(":", 1)[1]] = json.loads(raw)
        return found

    def child_pid(self, timeout: float = 60) -> int:
        """The pid of the live worker (the supervisor's child, or the process itself)."""

        def find() -> int | None:
            for name, presence in self.presences().items():
                if name.startswith(self.name):
                    return int(str(presence["pid"]))
            return None

        return int(str(wait_for(find, timeout, f"worker {self.name} to register\n{self.log_text()[-3000:]}")))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


@contextlib.contextmanager
def worker_process(
    settings: Settings, workdir: Path, *, supervised: bool = False, name: str = "test-worker"
) -> Iterator[WorkerProcess]:
    """`python -m worker` (or under `worker.supervisor`) in mock mode, in its own process group."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    module = "worker.supervisor" if supervised else "worker"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env=env_for(settings, WORKER_NAME=name, WORK_DIR=str(workdir)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    worker = WorkerProcess(process, log_path, settings, name)
    try:
        yield worker
    finally:
        worker.stop()


@contextlib.contextmanager
def live_api(settings: Settings, app: FastAPI | None = None) -> Iterator[str]:
    """The API (`app`, or one made from `settings`) in uvicorn on a free port; yields its base URL.

    A real server, unlike TestClient, which reads a request body whole before the app sees it."""
    config = uvicorn.Config(
        app or create_app(settings), host="127.0.0.1", port=free_port(), log_level="warning", lifespan="off",
        timeout_graceful_shutdown=2,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(15)
