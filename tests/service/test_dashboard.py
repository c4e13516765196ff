"""The RQ dashboard as it runs: `python -m backend.dashboard` as a real process on a real Redis.

The queue holds a job enqueued as the API enqueues it (shared/queue.py, JSONSerializer), and each
test checks one of the dashboard's rules against it: the login, the same-origin rule for changes
(a cross-site POST to "empty the queue" leaves the job in Redis), the Host check, and that it does
not start without a password.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from backend.dashboard import host_name
from tests.dashboard import (
    PASSWORD,
    ROOT,
    USER,
    Dashboard,
    QueuedJob,
    dashboard_env,
    login_header,
    queued_job,
    running_dashboard,
)
from tests.services import RedisServer, free_port

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def dashboard(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    with running_dashboard(redis_server.url, tmp_path_factory.mktemp("dashboard")) as running:
        yield running


@pytest.fixture
def queued(redis_server: RedisServer) -> Iterator[QueuedJob]:
    with queued_job(redis_server.url) as job:
        yield job


def login(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    return login_header(user, password)


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["details"] == {} and body["error"]["message"]
    code: str = body["error"]["code"]
    return code


# --- (a) the login ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, login(password="wrong-password"), login(user="admin"), {"Authorization": "Basic not-base64!"}],
    ids=["no-credentials", "wrong-password", "wrong-user", "garbage"],
)
def test_every_page_needs_the_login(dashboard: Dashboard, headers: dict[str, str]) -> None:
    for path in ("/", "/0/data/queues.json", "/static/js/jquery-3.5.1.min.js", "/no-such-page"):
        response = httpx.get(dashboard.url + path, headers=headers, timeout=10)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"] == 'Basic realm="rq-dashboard"'
        assert error_code(response) == "UNAUTHORIZED"


def test_a_change_without_the_login_is_refused_and_changes_nothing(dashboard: Dashboard, queued: QueuedJob) -> None:
    url = f"{dashboard.url}/queue/{queued.queue_name}/queued/empty"
    response = httpx.post(url, headers={"Origin": dashboard.url}, timeout=10)
    assert response.status_code == 401 and error_code(response) == "UNAUTHORIZED"
    assert queued.queued_ids() == [queued.job_id]


# --- (b) the right login ------------------------------------------------------------------------


def test_the_right_login_opens_the_dashboard_and_its_json_jobs(dashboard: Dashboard, queued: QueuedJob) -> None:
    page = httpx.get(dashboard.url + "/", headers=login(), timeout=10)
    assert page.status_code == 200 and "RQ" in page.text
    # Never inside another site's frame: its buttons cannot be clicked through a decoy.
    assert page.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert page.headers["X-Frame-Options"] == "DENY"
    # The job enqueued with JSONSerializer reads back (rq-dashboard's pickle default answers 500 here).
    job = httpx.get(f"{dashboard.url}/0/data/job/{queued.job_id}.json", headers=login(), timeout=10)
    assert job.status_code == 200, job.text
    assert job.json()["id"] == queued.job_id
    listing = f"{dashboard.url}/0/data/jobs/{queued.queue_name}/queued/8/asc/1.json"
    jobs = httpx.get(listing, headers=login(), timeout=10)
    assert jobs.status_code == 200 and [j["id"] for j in jobs.json()["jobs"]] == [queued.job_id]


# --- (c) cross-site changes are refused; (d) the dashboard's own are not ---------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {},  # neither Origin nor Referer
        {"Referer": "http://evil.example/page.html"},
        # Same host, other port or scheme: another origin.
        {"Origin": "http://127.0.0.1:1"},
        {"Origin": "https://127.0.0.1"},
        # A foreign Origin wins over a Referer that looks right.
        {"Origin": "http://evil.example", "Referer": "http://127.0.0.1:{port}/"},
    ],
    ids=["foreign-origin", "null-origin", "no-origin-no-referer", "foreign-referer", "other-port", "other-scheme",
         "origin-over-referer"],
)  # fmt: skip
def test_a_cross_site_post_is_refused_and_the_queue_keeps_its_job(
    dashboard: Dashboard, queued: QueuedJob, headers: dict[str, str]
) -> None:
    headers = {name: value.format(port=dashboard.port) for name, value in headers.items()}
    url = f"{dashboard.url}/queue/{queued.queue_name}/queued/empty"
    response = httpx.post(url, headers={**login(), **headers}, timeout=10)
    assert response.status_code == 403, response.text
    assert error_code(response) == "CROSS_SITE_REQUEST"
    assert queued.queued_ids() == [queued.job_id]
    assert httpx.get(f"{dashboard.url}/0/data/job/{queued.job_id}.json", headers=login(), timeout=10).status_code == 200


def test_requeue_all_on_get_counts_as_a_change(dashboard: Dashboard, queued: QueuedJob) -> None:
    # rq-dashboard serves /requeue/<queue> on GET too: an <img src> on any page could call it.
    response = httpx.get(f"{dashboard.url}/requeue/{queued.queue_name}", headers=login(), timeout=10)
    assert response.status_code == 403 and error_code(response) == "CROSS_SITE_REQUEST"


def test_a_same_origin_post_empties_the_queue(dashboard: Dashboard, queued: QueuedJob) -> None:
    url = f"{dashboard.url}/queue/{queued.queue_name}/queued/empty"
    response = httpx.post(url, headers={**login(), "Origin": dashboard.url}, timeout=10)
    assert response.status_code == 200 and response.json() == {"status": "OK"}
    assert queued.queued_ids() == []
    assert f"Origin: {dashboard.url}" not in dashboard.log_text()  # no request headers in the log
    assert f"POST /queue/{queued.queue_name}/queued/empty by {USER}" in dashboard.log_text()


def test_a_same_origin_referer_stands_in_for_a_missing_origin(dashboard: Dashboard, queued: QueuedJob) -> None:
    url = f"{dashboard.url}/queue/{queued.queue_name}/queued/empty"
    referer = f"http://localhost:{dashboard.port}/0/view/jobs"
    response = httpx.post(url, headers={**login(), "Host": f"localhost:{dashboard.port}", "Referer": referer})
    assert response.status_code == 200
    assert queued.queued_ids() == []


# --- (e) the Host check ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example", "localhost:{port}@evil.example", ""]
)
def test_a_foreign_host_is_refused(dashboard: Dashboard, queued: QueuedJob, host: str) -> None:
    host = host.format(port=dashboard.port)
    response = httpx.get(dashboard.url + "/", headers={**login(), "Host": host}, timeout=10)
    assert response.status_code == 400 and error_code(response) == "HOST_NOT_ALLOWED"
    # A rebound page's own origin matches its own Host: the Host check stops it first.
    url = f"{dashboard.url}/queue/{queued.queue_name}/queued/empty"
    origin = {"Origin": f"http://{host}"} if host else {}
    response = httpx.post(url, headers={**login(), "Host": host, **origin}, timeout=10)
    assert response.status_code == 400 and error_code(response) == "HOST_NOT_ALLOWED"
    assert queued.queued_ids() == [queued.job_id]


@pytest.mark.parametrize("host", ["localhost:{port}", "LOCALHOST", "[::1]:{port}", "127.0.0.1"])
def test_loopback_names_are_answered(dashboard: Dashboard, host: str) -> None:
    response = httpx.get(dashboard.url + "/", headers={**login(), "Host": host.format(port=dashboard.port)})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("header", "name"),
    [("localhost:9181", "localhost"), ("[::1]:9181", "::1"), ("[::1]", "::1"), ("Example.ORG.", "example.org"),
     ("10.0.0.1", "10.0.0.1"), ("[::1", ""), ("", ""), ("localhost:9181@evil.example", ""),
     ("localhost/x", ""), ("localhost:port", ""), ("local host", "")],
)  # fmt: skip
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


# --- (f) no start without a real password --------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"RQ_DASHBOARD_PASSWORD": ""}, "RQ_DASHBOARD_PASSWORD is empty"),
        ({"RQ_DASHBOARD_PASSWORD": "CHANGE-ME"}, "RQ_DASHBOARD_PASSWORD is a CHANGE-ME placeholder"),
        ({"RQ_DASHBOARD_PASSWORD": "admin"}, "RQ_DASHBOARD_PASSWORD is a CHANGE-ME placeholder or a well-known"),
        # Production's own check of the settings reaches the operator as one line too.
        (
            {"ENVIRONMENT": "production", "SECRET_KEY": "", "S3_SECRET_KEY": "minioadmin"},
            "ENVIRONMENT=production refuses to start: S3_SECRET_KEY",
        ),
    ],
    ids=["empty", "change-me", "well-known", "production-settings"],
)
def test_it_does_not_start_without_a_real_password(
    redis_server: RedisServer, extra: dict[str, str], message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "backend.dashboard", "--port", str(free_port())],
        cwd=ROOT, env=dashboard_env(redis_server.url, **extra), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rq-dashboard: ") and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr
