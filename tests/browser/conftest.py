"""A live stack in mock mode for the browser tests, and the browser tooling they need.

`web_stack` runs the API (uvicorn) and one worker (`python -m worker`,
USE_MOCK_ANALYSIS=true) as their own processes on the session's real Redis and
S3 (tests/conftest.py), and yields the stack (`.api_url`, `.settings`). Its settings
are `service_settings` (an open API, presigned result links) unless a test passes
others by indirect parametrization: `@pytest.mark.parametrize("web_stack",
[tests.auth.keyed, ...], indirect=True)`, each a function of the settings. `browser_tools` makes sure
Debian's Chromium and Node are there and installs playwright-core from
tests/browser/package-lock.json (`npm ci`) when node_modules is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.settings import Settings
from tests.services import free_port
from tests.tools import missing_tool

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.browser)


@dataclass
class BrowserTools:
    node: str
    chromium: str
    workdir: Path  # where the driver scripts and node_modules live


@pytest.fixture(scope="session")
def browser_tools() -> BrowserTools:
    chromium = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    node = shutil.which("node")
    if not chromium or not node:
        missing_tool("Debian's chromium and Node.js (apt-get install -y chromium nodejs npm)")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        npm = shutil.which("npm")
        if not npm:
            missing_tool("npm, to install playwright-core (apt-get install -y npm)")
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.fail(f"npm ci in {HERE} failed:\n{done.stdout}\n{done.stderr}", pytrace=False)
    return BrowserTools(node=node, chromium=chromium, workdir=HERE)


def settings_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The process environment that makes `Settings()` equal `settings` (plus overrides)."""
    env = dict(os.environ)
    for name, value in settings.model_dump(mode="json").items():
        env[name.upper()] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    env.update(overrides)
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Stack:
    api_url: str
    settings: Settings
    logs: dict[str, Path]

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for name, path in self.logs.items():
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            out.append(f"--- {name} ({path}) ---\n" + "\n".join(text))
        return "\n".join(out)


def _stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _api_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def web_stack(service_settings: Settings, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """API + one mock worker as separate processes; yields the stack (`.api_url`)."""
    port = free_port()
    settings = service_settings.model_copy(update={"use_mock_analysis": True, "progress_every_frames": 5})
    adjust: Callable[[Settings], Settings] | None = getattr(request, "param", None)
    if adjust is not None:
        settings = adjust(settings)
    env = settings_env(settings)
    logs = {"api": tmp_path / "api.log", "worker": tmp_path / "worker.log"}
    processes: list[subprocess.Popen[bytes]] = []
    commands = {
        "api": [sys.executable, "-m", "uvicorn", "backend.main:create_app", "--factory",
                "--host", "127.0.0.1", "--port", str(port), "--timeout-graceful-shutdown", "3"],
        "worker": [sys.executable, "-m", "worker"],
    }  # fmt: skip
    stack = Stack(f"http://127.0.0.1:{port}", settings, logs)
    try:
        for name, command in commands.items():
            with logs[name].open("ab") as log:
                processes.append(
                    subprocess.Popen(
                        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                    )
                )
        deadline = time.monotonic() + 30
        while not _api_ready(stack.api_url):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                pytest.fail(f"the stack did not come up:\n{stack.log_tail()}", pytrace=False)
            time.sleep(0.1)
        yield stack
    finally:
        for process in reversed(processes):
            _stop(process)
