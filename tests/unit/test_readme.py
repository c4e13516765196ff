"""The README is the newcomer's map: its settings table and quick start must stay true."""

from __future__ import annotations

import re
from pathlib import Path

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", README))
    missing = {name.upper() for name in Settings.model_fields} - documented
    assert not missing, f"settings missing from the README table: {sorted(missing)}"


def test_quick_start_commands_exist_and_ci_runs_the_test_command() -> None:
    assert "./manage.sh local start" in README and "./manage.sh test" in README
    assert "./manage.sh test" in (ROOT / ".ci" / "run").read_text()
