"""`python -m worker.supervisor` with real child processes and real signals (no Redis needed:
releasing a dead worker's job is tried, fails against a closed port, and is logged)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.processes import ROOT, wait_for


def supervise(child_code: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0", "STARTS": str(tmp_path / "starts")}
    return subprocess.Popen(
        [sys.executable, "-m", "worker.supervisor", "--", sys.executable, "-c", child_code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


# Each child appends its WORKER_NAME and pid to $STARTS, then does what the test says.
RECORD = (
    "import os, signal, sys, time; "
    "open(os.environ['STARTS'], 'a').write(os.environ['WORKER_NAME'] + ' ' + str(os.getpid()) + '\\n'); "
)


def starts(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "starts"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_a_worker_that_cannot_start_is_not_restarted(tmp_path: Path) -> None:
    supervisor = supervise(RECORD + "sys.exit(2)", tmp_path)
    assert supervisor.wait(30) == 2
    assert len(starts(tmp_path)) == 1
    assert "not restarting" in (supervisor.stdout.read() if supervisor.stdout else "")


def test_a_killed_worker_is_started_again_under_a_new_name_with_backoff(tmp_path: Path) -> None:
    supervisor = supervise(RECORD + "time.sleep(600)", tmp_path)
    try:
        wait_for(lambda: len(starts(tmp_path)) == 1, 30, "the first worker")
        os.kill(int(starts(tmp_path)[0][1]), signal.SIGKILL)
        wait_for(lambda: len(starts(tmp_path)) == 2, 30, "a second worker")
        os.kill(int(starts(tmp_path)[1][1]), signal.SIGKILL)
        wait_for(lambda: len(starts(tmp_path)) == 3, 30, "a third worker")
        names = [name for name, _ in starts(tmp_path)]
        assert len(set(names)) == 3 and all(name.endswith(f"-w{i}") for i, name in enumerate(names, 1))
        assert supervisor.poll() is None
    finally:
        supervisor.send_signal(signal.SIGTERM)
        output = supervisor.communicate(timeout=30)[0]
    assert supervisor.returncode == 0
    assert output.count("was killed by SIGKILL") == 2
    assert "starting a new one in 1 s" in output and "starting a new one in 2 s" in output  # the backoff doubles


def test_sigterm_is_passed_on_and_the_supervisor_exits_with_its_worker(tmp_path: Path) -> None:
    code = RECORD + (
        "signal.signal(signal.SIGTERM, lambda *a: (open(os.environ['STARTS'] + '.term', 'w').write('TERM'), "
        "sys.exit(0)));\nwhile True: time.sleep(0.1)"
    )
    supervisor = supervise(code, tmp_path)
    wait_for(lambda: starts(tmp_path), 30, "the worker")
    time.sleep(0.3)  # its handler is installed
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(30) == 0
    assert (tmp_path / "starts.term").read_text() == "TERM"
    assert len(starts(tmp_path)) == 1  # not restarted after a requested stop


@pytest.mark.parametrize("pid_alive", [True, False])
def test_scratch_folders_of_dead_processes_are_removed(tmp_path: Path, pid_alive: bool) -> None:
    from worker.scratch import remove_orphans

    if pid_alive:
        pid = os.getpid()
    else:
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        pid = gone.pid
    folder = tmp_path / f"job-0123abcd-{pid}-xyz"
    folder.mkdir()
    (folder / "source.mp4").write_bytes(b"x")
    unrelated = tmp_path / "keep-me"
    unrelated.mkdir()
    removed = remove_orphans(str(tmp_path))
    assert folder.exists() is pid_alive and removed == ([] if pid_alive else [folder])
    assert unrelated.exists()
