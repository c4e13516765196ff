"""Finding the external tools some tests drive (linters, Chromium, Node).

A missing tool skips its test on a developer's machine but fails it under CI
(CI=true): `./manage.sh test` installs every one, so CI cannot go green by
checking nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing_tool(what: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"{what} is not installed (./manage.sh test installs it)", pytrace=False)
    pytest.skip(f"{what} is not installed")


def find_tool(name: str) -> str | None:
    """A tool from PATH or from the running interpreter's bin dir (the venv)."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
