"""`GET /jobs/{id}` as pollers use it: ETag and 304, long polls, and several API processes.

Against a real API (uvicorn), a real Redis and SeaweedFS; the job is moved by
hand through the store, as a worker would move it. No timing is asserted
beyond "before the wait ran out" and "not before it did".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from backend import changes
from backend.main import create_app
from shared.jobs import JobRecord, JobStage, JobStatus, JobStore, now
from shared.keys import RedisKeys
from shared.settings import Settings
from tests.processes import ROOT, env_for, live_api, wait_for
from tests.services import free_port, launch_redis

pytestmark = pytest.mark.service


@pytest.fixture
def store(service_settings: Settings) -> JobStore:
    return JobStore(redis.Redis.from_url(service_settings.redis_url), RedisKeys(service_settings.key_prefix))


@pytest.fixture
def app(service_settings: Settings) -> FastAPI:
    return create_app(service_settings)


@pytest.fixture
def api(service_settings: Settings, app: FastAPI) -> Iterator[str]:
    with live_api(service_settings, app) as url:
        yield url


def new_job(store: JobStore, **fields: object) -> str:
    record = JobRecord(job_id=uuid.uuid4().hex, filename="dance.mp4", **fields)  # type: ignore[arg-type]
    store.create(record)
    return record.job_id


def start(store: JobStore, job_id: str) -> None:
    assert store.update(
        job_id, status=JobStatus.RUNNING, stage=JobStage.ANALYZING, started_at=now(), heartbeat_at=now()
    )


def get(url: str, job_id: str, etag: str | None = None, **params: float) -> httpx.Response:
    headers = {"If-None-Match": etag} if etag else {}
    return httpx.get(f"{url}/jobs/{job_id}", headers=headers, params=params, timeout=90)


# --- ETag and 304 -------------------------------------------------------------------------------


def test_an_unchanged_job_answers_304_and_a_changed_one_200_with_a_new_etag(api: str, store: JobStore) -> None:
    job_id = new_job(store)
    first = get(api, job_id)
    assert first.status_code == 200 and first.json()["status"] == "queued"
    etag = first.headers["etag"]
    assert etag.startswith('W/"') and "no-cache" in first.headers["cache-control"]

    again = get(api, job_id, etag)
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert get(api, job_id, "*").status_code == 304
    assert get(api, job_id, f'"other", {etag}').status_code == 304, "a list of ETags matches any of them"
    assert get(api, job_id, etag.removeprefix("W/")).status_code == 304, "weak comparison"

    start(store, job_id)
    changed = get(api, job_id, etag)
    assert changed.status_code == 200 and changed.json()["status"] == "running"
    assert changed.headers["etag"] != etag
    etag = changed.headers["etag"]

    assert store.report(job_id, heartbeat_at=now())  # a heartbeat shows nothing new
    assert get(api, job_id, etag).status_code == 304
    assert store.report(job_id, progress=0.5, frames_done=10)
    moved = get(api, job_id, etag)
    assert moved.status_code == 200 and moved.json()["progress"] == 0.5 and moved.headers["etag"] != etag


def test_a_cached_view_is_never_served_after_the_job_changed(api: str, store: JobStore) -> None:
    job_id = new_job(store)
    for progress in (0.1, 0.2, 0.3, 0.4, 0.5):
        get(api, job_id)  # cached now
        assert store.update(job_id, progress=progress)
        assert get(api, job_id).json()["progress"] == progress  # at once: the change feed dropped it


def test_a_change_written_behind_the_stores_back_shows_within_the_trust_period(
    api: str, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import backend.status

    monkeypatch.setattr(backend.status, "TRUST_SECONDS", 0.5)
    job_id = new_job(store)
    assert get(api, job_id).json()["status"] == "queued"
    store.redis.hset(store.keys.job(job_id), mapping={"status": "canceled", "finished_at": str(now())})  # no PUBLISH
    wait_for(lambda: get(api, job_id).json()["status"] == "canceled", 5, "the cached view to be read again")


def test_a_deleted_job_is_gone_at_once_and_another_keys_job_never_shows(api: str, store: JobStore) -> None:
    job_id = new_job(store)
    etag = get(api, job_id).headers["etag"]
    store.delete(job_id)
    gone = get(api, job_id, etag)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "JOB_NOT_FOUND"


# --- long polls ---------------------------------------------------------------------------------


def test_a_long_poll_answers_as_soon_as_the_job_changes(api: str, store: JobStore) -> None:
    job_id = new_job(store)
    etag = get(api, job_id).headers["etag"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        began = time.monotonic()
        answer = pool.submit(get, api, job_id, etag, wait=30)
        time.sleep(0.5)
        assert not answer.done(), "nothing changed yet: the poll waits"
        start(store, job_id)
        response = answer.result(timeout=30)
        took = time.monotonic() - began
    assert response.status_code == 200 and response.json()["status"] == "running"
    assert response.headers["etag"] != etag
    assert took < 20, f"answered after {took:.1f} s, not when the job changed"


def test_a_long_poll_on_an_unchanged_job_answers_304_when_the_wait_is_over(api: str, store: JobStore) -> None:
    job_id = new_job(store)
    etag = get(api, job_id).headers["etag"]
    began = time.monotonic()
    store.report(job_id, heartbeat_at=now())  # not a change
    response = get(api, job_id, etag, wait=1.5)
    took = time.monotonic() - began
    assert response.status_code == 304 and response.headers["etag"] == etag
    assert took >= 1.4, f"answered after {took:.2f} s of a 1.5 s wait"


def test_a_long_poll_with_an_old_etag_answers_at_once(api: str, store: JobStore) -> None:
    job_id = new_job(store)
    old = get(api, job_id).headers["etag"]
    start(store, job_id)
    began = time.monotonic()
    response = get(api, job_id, old, wait=30)
    assert response.status_code == 200 and response.json()["status"] == "running"
    assert time.monotonic() - began < 20


def test_a_long_poll_without_an_etag_waits_for_a_change_from_now(api: str, store: JobStore) -> None:
    job_id = new_job(store)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(get, api, job_id, None, wait=30)
        time.sleep(0.5)
        assert not answer.done()
        start(store, job_id)
        response = answer.result(timeout=30)
    assert response.status_code == 200 and response.json()["status"] == "running"


def test_a_long_poll_on_a_final_job_answers_at_once(api: str, store: JobStore) -> None:
    job_id = new_job(store, status=JobStatus.CANCELED, finished_at=now())
    etag = get(api, job_id).headers["etag"]
    began = time.monotonic()
    assert get(api, job_id, etag, wait=30).status_code == 304
    assert time.monotonic() - began < 20, "a final job never changes again: no reason to wait"


def test_a_long_poll_ends_with_404_when_the_job_is_deleted(api: str, store: JobStore) -> None:
    job_id = new_job(store)
    etag = get(api, job_id).headers["etag"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(get, api, job_id, etag, wait=30)
        time.sleep(0.5)
        store.delete(job_id)
        response = answer.result(timeout=30)
    assert response.status_code == 404 and response.json()["error"]["code"] == "JOB_NOT_FOUND"


def test_waiting_polls_leave_nothing_behind(api: str, app: FastAPI, store: JobStore) -> None:
    job_id = new_job(store)
    etag = get(api, job_id).headers["etag"]
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = [pool.submit(get, api, job_id, etag, wait=30) for _ in range(20)]
        wait_for(lambda: app.state.changes.waiting == 20, 10, "20 waiting polls")
        start(store, job_id)
        assert {a.result(timeout=30).json()["status"] for a in answers} == {"running"}
    assert app.state.changes.waiting == 0


def test_without_the_change_feed_a_long_poll_still_sees_the_change(
    service_settings: Settings, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never_subscribes(self: changes.ChangeFeed) -> None:  # Redis pub/sub out of reach
        return None

    monkeypatch.setattr(changes.ChangeFeed, "_listen", never_subscribes)
    monkeypatch.setattr(changes, "DEGRADED_POLL_SECONDS", 0.2)
    job_id = new_job(store)
    with live_api(service_settings) as api:
        etag = get(api, job_id).headers["etag"]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(get, api, job_id, etag, wait=30)
            time.sleep(0.5)
            start(store, job_id)
            response = answer.result(timeout=30)
        assert response.status_code == 200 and response.json()["status"] == "running"
        assert get(api, job_id).json()["status"] == "running", "nothing is cached while changes cannot be heard"


def test_the_change_feed_listens_from_the_start_and_stops_with_the_app(service_settings: Settings) -> None:
    app = create_app(service_settings)
    with TestClient(app):  # runs the app's lifespan, as uvicorn does
        wait_for(lambda: app.state.changes.live, 10, "the feed to listen before any request")
    assert app.state.changes._task is None


def test_a_burst_of_polls_beyond_the_redis_connections_waits_for_one_instead_of_failing(
    service_settings: Settings, store: JobStore
) -> None:
    # redis-py's plain async pool refuses the 101st concurrent command ("Too many connections"):
    # a thousand pollers arriving together got 503s. Redis paused for a second piles them up.
    ids = [new_job(store) for _ in range(150)]

    async def burst(api: str) -> list[int]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=200), timeout=30) as client:
            store.redis.execute_command("CLIENT", "PAUSE", "1000", "ALL")
            answers = await asyncio.gather(*(client.get(f"{api}/jobs/{job_id}") for job_id in ids))
        return [answer.status_code for answer in answers]

    with live_api(service_settings) as api:
        assert asyncio.run(burst(api)) == [200] * len(ids)


def test_after_redis_restarts_no_view_from_before_is_served(
    service_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes made while the feed was down were never heard: what it cached before must go."""
    import backend.status

    monkeypatch.setattr(backend.status, "TRUST_SECONDS", 600.0)  # only the feed's reset can drop the view
    (tmp_path / "redis").mkdir()
    server = launch_redis(tmp_path / "redis", persistent=True)
    try:
        settings = service_settings.model_copy(update={"redis_url": server.url})
        store = JobStore(redis.Redis.from_url(server.url), RedisKeys(settings.key_prefix))
        job_id = new_job(store)
        app = create_app(settings)
        with live_api(settings, app) as api:
            get(api, job_id)  # starts the change feed
            wait_for(lambda: app.state.changes.live, 10, "the change feed to listen")
            etag = get(api, job_id).headers["etag"]
            hits = app.state.statuses.hits
            assert get(api, job_id, etag).status_code == 304 and app.state.statuses.hits == hits + 1, "cached"
            time.sleep(1.5)  # appendfsync everysec: on disk
            server.server.process.send_signal(signal.SIGKILL)
            server.server.process.wait(10)
            wait_for(lambda: not app.state.changes.live, 10, "the feed to notice Redis is gone")
            server = launch_redis(tmp_path / "redis", persistent=True, port=server.port)
            # Changed behind the feed's back: while it reconnects, and in a way no PUBLISH announces.
            store.redis.hset(store.keys.job(job_id), mapping={"status": "canceled", "version": "7"})
            wait_for(lambda: app.state.changes.live, 30, "the change feed to listen again")
            answer = get(api, job_id, etag)
            assert answer.status_code == 200 and answer.json()["status"] == "canceled"
            assert answer.headers["etag"] == 'W/"7"'
    finally:
        server.stop()


@pytest.mark.parametrize("wait", ["-1", "61", "soon"])
def test_a_wait_out_of_range_is_a_422_envelope(api: str, store: JobStore, wait: str) -> None:
    response = httpx.get(f"{api}/jobs/{new_job(store)}", params={"wait": wait})
    assert response.status_code == 422 and response.json()["error"]["code"] == "VALIDATION_ERROR"


# --- several API processes ----------------------------------------------------------------------


@pytest.fixture
def two_apis(service_settings: Settings, tmp_path: Path) -> Iterator[list[str]]:
    """Two API processes (uvicorn, as deployed) on one Redis and one S3, as behind a load balancer."""
    processes, urls = [], []
    log = (tmp_path / "apis.log").open("wb")
    try:
        for _ in range(2):
            port = free_port()
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", "backend.main:create_app", "--factory",
                     "--port", str(port), "--log-level", "warning"],
                    cwd=ROOT, env=env_for(service_settings), stdout=log, stderr=log,
                )
            )  # fmt: skip
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            wait_for(lambda u=url: _healthy(u), 30, f"the API at {url}")
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
        log.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_several_api_processes_serve_one_job_consistently(two_apis: list[str], store: JobStore) -> None:
    one, other = two_apis
    job_id = new_job(store)
    first = get(one, job_id)
    assert get(other, job_id).headers["etag"] == first.headers["etag"], "the same state, the same ETag everywhere"
    assert get(other, job_id, first.headers["etag"]).status_code == 304

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(get, other, job_id, first.headers["etag"], wait=30)
        time.sleep(0.5)
        canceled = httpx.post(f"{one}/jobs/{job_id}/cancel", timeout=10)  # through the first process
        assert canceled.status_code == 200
        woken = waiting.result(timeout=30)  # the second one's long poll hears it
    assert woken.status_code == 200 and woken.json()["status"] == "canceled"
    views = [get(url, job_id) for url in two_apis]
    assert [v.json() for v in views] == [woken.json()] * 2
    assert views[0].headers["etag"] == views[1].headers["etag"] == woken.headers["etag"]


def test_python_m_backend_runs_several_processes_that_agree_on_one_job(
    service_settings: Settings, store: JobStore, tmp_path: Path
) -> None:
    """The launcher manage.sh and the backend image run: API_PROCESSES uvicorn workers on one port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "api.log").open("wb")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "backend", "--port", str(port)],
        cwd=ROOT, env=env_for(service_settings, API_PROCESSES="2"), stdout=log, stderr=log,
    )  # fmt: skip
    try:
        wait_for(lambda: _healthy(url), 60, f"the API\n{(tmp_path / 'api.log').read_text()}")
        children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() for pid in children]
        # multiprocessing's spawned children, beside its resource tracker
        servers = [c for c in commands if "multiprocessing.spawn" in c and "resource_tracker" not in c]
        assert len(servers) == 2, f"two API processes under the launcher: {commands}"
        job_id = new_job(store)
        # Fresh connections, so the kernel hands them to either process.
        etags = {httpx.get(f"{url}/jobs/{job_id}", headers={"Connection": "close"}).headers["etag"] for _ in range(20)}
        assert len(etags) == 1
        start(store, job_id)
        seen = [httpx.get(f"{url}/jobs/{job_id}", headers={"Connection": "close"}).json() for _ in range(20)]
        assert {view["status"] for view in seen} == {"running"}, "no process kept the old view"
    finally:
        launcher.terminate()
        assert launcher.wait(30) == 0, (tmp_path / "api.log").read_text()
        log.close()
