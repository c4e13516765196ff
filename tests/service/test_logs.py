"""JSON logs from real processes: a worker running a job, and the API under the uvicorn command
line that Compose and manage.sh use. Every line is one JSON object; every line about a job
carries its id."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.settings import Settings
from tests.processes import ROOT, env_for, live_api, wait_for, worker_process
from tests.services import free_port
from tests.synthetic import make_clip

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("logs") / "clip.mp4", seconds=2, fps=15)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of a log as JSON; fails on the first line that is not one JSON object."""
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            parsed = json.loads(line)
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {line!r}\n{text[-3000:]}")
        assert isinstance(parsed, dict) and {"time", "level", "logger", "message"} <= set(parsed), line
        lines.append(parsed)
    return lines


def moment(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["time"].replace("Z", "+00:00")).timestamp()


def test_every_line_a_worker_logs_while_a_job_runs_carries_its_id(
    service_settings: Settings, clip: Path, tmp_path: Path
) -> None:
    with live_api(service_settings) as api:
        response = httpx.post(f"{api}/analyze", files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")})
        job_id = response.json()["job_id"]
        with worker_process(service_settings, tmp_path / "worker") as worker:
            wait_for(
                lambda: httpx.get(f"{api}/jobs/{job_id}").json()["status"] == "succeeded",
                60,
                f"the job to succeed\n{worker.log_text()[-3000:]}",
            )
            job = httpx.get(f"{api}/jobs/{job_id}").json()
            worker.stop()
            lines = json_lines(worker.log_text())

    started, finished = (datetime.fromisoformat(job[name]).timestamp() for name in ("started_at", "finished_at"))
    # Log times have millisecond precision: the job's window, to the millisecond.
    during = [line for line in lines if started - 0.001 <= moment(line) <= finished + 0.001]
    assert during and [line for line in during if line.get("job_id") != job_id] == []
    # From the first line about the job to RQ's last one after it: all of them carry the id.
    # (RQ's dequeue line, just before, names the job in its message: RQ logs it before any hook runs.)
    marked = [i for i, line in enumerate(lines) if line.get("job_id") == job_id]
    span = lines[marked[0] : marked[-1] + 1]
    assert len(span) >= 4 and all(line.get("job_id") == job_id for line in span), span
    about = [line for line in lines if line.get("job_id") == job_id]
    loggers = {line["logger"] for line in about}
    # Our own lines and RQ's (its "Job OK" comes after the record says succeeded).
    assert {"worker.tasks", "rq.worker"} <= loggers, about
    assert any("Job OK" in line["message"] for line in about if line["logger"] == "rq.worker")
    # One line says where the run's time went, stage by stage.
    (summary,) = [line["message"] for line in about if line["message"].startswith(f"job {job_id} succeeded in ")]
    assert all(f"{stage} " in summary for stage in ("fetching", "listening", "rendering", "uploading")), summary
    # No colour codes, no second plain-text handler from RQ: every line above parsed as JSON.
    assert not any("\x1b" in line["message"] for line in lines)
    # Lines outside any job have no id.
    assert any("ready" in line["message"] and "job_id" not in line for line in lines)


def test_the_api_under_uvicorns_command_line_logs_json_with_the_job_id(
    service_settings: Settings, clip: Path, tmp_path: Path
) -> None:
    """`uvicorn backend.main:create_app --factory`, as Compose and manage.sh start it, with no log flags."""
    port = free_port()
    log_path = tmp_path / "api.log"
    command = [sys.executable, "-m", "uvicorn", "backend.main:create_app", "--factory",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env_for(service_settings), stdout=log, stderr=subprocess.STDOUT
        )
    api = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"{api}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                assert process.poll() is None, log_path.read_text()
                return False

        wait_for(healthy, 30, "the API to start")
        job_id = httpx.post(f"{api}/analyze", files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")}).json()[
            "job_id"
        ]
        assert httpx.get(f"{api}/jobs/{job_id}").status_code == 200
    finally:
        process.terminate()
        process.wait(20)
    lines = json_lines(log_path.read_text())
    assert any(line["logger"] == "uvicorn.error" and "Started server process" in line["message"] for line in lines)
    queued = [line for line in lines if line["logger"] == "backend.routes.analyze"]
    assert queued and queued[0]["job_id"] == job_id
    access = [line for line in lines if line["logger"] == "uvicorn.access" and f"/jobs/{job_id}" in line["message"]]
    assert access and access[0]["job_id"] == job_id, lines
    assert all("job_id" not in line for line in lines if "/health" in line["message"])
