"""`./manage.sh local overview` reaches `python -m shared.overview` with the local stack's settings."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "manage.sh"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def test_help_lists_overview() -> None:
    done = manage("local", "help", env=dict(os.environ))
    assert done.returncode == 0 and "overview [--json] [--failures N]" in done.stdout


@pytest.mark.skipif(not (ROOT / ".venv/bin/python").exists(), reason="needs the project's .venv")
def test_without_a_running_stack_it_says_redis_is_unavailable(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "LOCAL_DIR": str(tmp_path), "REDIS_PORT": str(port)}
    done = manage("local", "overview", "--json", env=env)
    assert done.returncode == 1
    assert f"Redis at redis://127.0.0.1:{port}/0 is unavailable" in done.stderr
