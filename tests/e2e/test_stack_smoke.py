"""The local stack as `./manage.sh local` runs it: up, healthy, reported, and stopped cleanly."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request

import pytest

from tests.e2e.conftest import LocalStack, process_alive

pytestmark = pytest.mark.e2e


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def test_health_is_ok(local_stack: str) -> None:
    status, body = get(f"{local_stack}/health")
    assert status == 200
    assert json.loads(body)["status"] == "ok"


def test_status_reports_every_service_running_and_every_url(local_stack_info: LocalStack) -> None:
    out = local_stack_info.manage("local", "status").stdout
    for service in ("redis", "s3", "api", "worker", "dashboard"):
        assert any(line.split()[:2] == [service, "running"] for line in out.splitlines()), out
    for url in local_stack_info.urls.values():
        assert url in out, f"{url} missing from:\n{out}"


def test_docs_and_dashboard_answer(local_stack_info: LocalStack) -> None:
    assert get(local_stack_info.urls["docs"])[0] == 200
    url = f"{local_stack_info.urls['dashboard']}/0/data/queues.json"
    # The dashboard needs its login, which the stack made and `status` prints.
    with pytest.raises(urllib.error.HTTPError) as refused:
        get(url)
    assert refused.value.code == 401
    out = local_stack_info.manage("local", "status").stdout
    found = re.search(r"RQ dashboard .*\(user (\S+), password (\S+)\)", out)
    assert found, out
    login = base64.b64encode(f"{found[1]}:{found[2]}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {login}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        # It reads the JSON-serialized queue.
        assert response.status == 200 and "queues" in json.loads(response.read())


def test_start_again_is_a_no_op(local_stack_info: LocalStack) -> None:
    before = local_stack_info.pids()
    done = local_stack_info.manage("local", "start")
    assert "already running" in done.stderr
    assert local_stack_info.pids() == before


def test_stop_leaves_no_process_and_start_brings_it_back(local_stack_info: LocalStack) -> None:
    # Runs last in this module; the stack is up again afterwards for any later test.
    pids = local_stack_info.pids()
    assert set(pids) == {"redis", "s3", "api", "worker", "dashboard"}
    local_stack_info.stop()
    assert not any(process_alive(pid) for pid in pids.values())
    status = local_stack_info.manage("local", "status", check=False)
    assert status.returncode == 3 and "running" not in status.stdout
    local_stack_info.start()
    assert get(f"{local_stack_info.base_url}/health")[0] == 200
