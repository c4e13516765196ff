"""manage.sh's dispatcher and argument checks: fast, nothing is started or installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [ROOT / "manage.sh", ROOT / "scripts/manage/common.sh", ROOT / "scripts/manage/local.sh", ROOT / ".ci/run"]


def run(*args: str, root: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(root / "manage.sh"), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env=env,
        check=False,
    )


@pytest.fixture
def without_compose(tmp_path: Path) -> Path:
    """A copy of manage.sh and its local parts, with no scripts/manage/compose.sh."""
    (tmp_path / "scripts/manage").mkdir(parents=True)
    shutil.copy(ROOT / "manage.sh", tmp_path / "manage.sh")
    for name in ("common.sh", "local.sh"):
        shutil.copy(ROOT / "scripts/manage" / name, tmp_path / "scripts/manage" / name)
    return tmp_path


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_scripts_are_shellcheck_clean() -> None:
    done = subprocess.run(
        ["shellcheck", "-x", *map(str, SCRIPTS)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout


def test_help_lists_every_part() -> None:
    done = run("help")
    assert done.returncode == 0
    for text in ("./manage.sh test", "./manage.sh local COMMAND", "test-upload FILE", "cpu (default)"):
        assert text in done.stdout


def test_no_arguments_prints_help() -> None:
    done = run()
    assert done.returncode == 0 and "Usage: ./manage.sh" in done.stdout


@pytest.mark.parametrize(
    "args",
    [("local", "bogus"), ("--bogus",), ("local", "logs", "nosuchservice"), ("local", "test-upload")],
)
def test_bad_commands_fail_with_one_line(args: tuple[str, ...]) -> None:
    done = run(*args)
    assert done.returncode != 0
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr


def test_test_upload_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    done = run("local", "test-upload", str(tmp_path / "missing.mp4"))
    assert done.returncode == 1
    assert done.stderr == f"error: no such file: {tmp_path / 'missing.mp4'}\n"


def test_test_upload_checks_the_profile(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    done = run("local", "test-upload", str(video), "--profile", "turbo")
    assert done.returncode == 1 and "fast or accurate" in done.stderr


def test_docker_commands_without_compose_sh_fail_clearly(without_compose: Path) -> None:
    for args in (("start",), ("nvidia", "start"), ("mac", "logs", "worker")):
        done = run(*args, root=without_compose)
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and "compose.sh is missing" in done.stderr, done.stderr


def test_help_without_compose_sh_still_works(without_compose: Path) -> None:
    done = run("help", root=without_compose)
    assert done.returncode == 0 and "not available yet" in done.stdout


def test_status_of_a_stack_that_never_ran(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "LOCAL_DIR": str(tmp_path / "local"), "API_PORT": "18123"}
    done = run("local", "status", env=env)
    assert done.returncode == 3  # not running
    assert "api        stopped" in done.stdout and "http://127.0.0.1:18123/docs" in done.stdout


def test_the_stack_folder_and_its_secrets_are_private_and_kept(tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir(mode=0o755)
    local.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "LOCAL_DIR": str(local), "API_PORT": "18124"}
    first = run("local", "status", env=env)
    assert local.stat().st_mode & 0o777 == 0o700
    secrets = local / "secrets.env"
    assert secrets.stat().st_mode & 0o777 == 0o600
    password = next(line.split("=", 1)[1] for line in secrets.read_text().splitlines() if "DASHBOARD" in line)
    assert len(password) >= 32 and f"password {password})" in first.stdout
    assert "needs a key: ./manage.sh local keys create NAME" in first.stdout
    # Made once: a second run shows the same password.
    assert f"password {password})" in run("local", "status", env=env).stdout
    opened = run("local", "status", env={**env, "API_AUTH": "open"})
    assert "OPEN: no key needed" in opened.stdout
    assert run("local", "status", env={**env, "API_AUTH": "maybe"}).returncode == 1


def test_a_bad_port_is_refused(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "LOCAL_DIR": str(tmp_path / "local"), "API_PORT": "80000"}
    done = run("local", "status", env=env)
    assert done.returncode == 1 and "API_PORT=80000" in done.stderr


def test_an_unknown_profile_is_named_as_such() -> None:
    done = run("gpu", "start")
    assert done.returncode != 0
    assert done.stderr == "error: unknown profile 'gpu' (one of: local cpu nvidia amd mac)\n"
    done = run("frobnicate")
    assert done.returncode != 0 and "unknown command 'frobnicate'" in done.stderr
