"""`GET /jobs/{id}/events` (Server-Sent Events) against a real Redis and S3, over real HTTP.

The API runs in uvicorn on a free port in a thread of this process, so the
streams, their ends and client disconnects are the real thing (no ASGI
shortcut). Also here: the web page is served at /app/, `GET /` links to it,
and CORS lets a separate frontend origin use the API, the stream included.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from fastapi import FastAPI

from backend.main import create_app
from backend.routes import events
from shared.jobs import JobRecord, JobStage, JobStatus, JobStore, now
from shared.keys import RedisKeys
from shared.settings import Settings
from tests.processes import live_api
from tests.synthetic import make_clip
from worker.analysis.mock import MockAnalyzer
from worker.context import build_context
from worker.tasks import run

pytestmark = pytest.mark.service

FRONTEND = "http://frontend.example:5173"


@pytest.fixture
def settings(service_settings: Settings) -> Settings:
    return service_settings.model_copy(update={"cors_origins": FRONTEND})


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def base_url(settings: Settings, app: FastAPI) -> Iterator[str]:
    with live_api(settings, app) as url:
        yield url


@pytest.fixture
def store(settings: Settings) -> JobStore:
    return JobStore(redis.Redis.from_url(settings.redis_url), RedisKeys(settings.key_prefix))


@pytest.fixture
def fast_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-check the record every 0.3 s, a keep-alive comment every 0.5 s (instead of 5 s and 15 s)."""
    monkeypatch.setattr(events, "RECHECK_SECONDS", 0.3)
    monkeypatch.setattr(events, "HEARTBEAT_SECONDS", 0.5)
    monkeypatch.setattr(events, "TICK_SECONDS", 0.1)


def new_job(store: JobStore, **fields: object) -> str:
    """A job record as the API would create it (no upload, no queue: the tests move it by hand)."""
    record = JobRecord(job_id=uuid.uuid4().hex, filename="dance.mp4", **fields)  # type: ignore[arg-type]
    store.create(record)
    return record.job_id


# --- a small SSE client ---------------------------------------------------------------------


@dataclass
class Event:
    name: str = "message"
    data: str = ""
    comments: list[str] = field(default_factory=list)

    @property
    def job(self) -> dict:
        return json.loads(self.data)


class EventReader:
    """Reads a text/event-stream one event at a time (comment-only blocks count as events too)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()
        self.retry: int | None = None

    def next(self, *, skip_comments: bool = True) -> Event | None:
        """The next event; None when the stream ended."""
        event = Event()
        seen = False
        for line in self.lines:
            if line == "":
                if not seen:
                    continue
                if event.data or event.name != "message" or not skip_comments:
                    return event
                event, seen = Event(), False  # a keep-alive or retry block only
                continue
            seen = True
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "":
                event.comments.append(value)
            elif key == "event":
                event.name = value
            elif key == "data":
                event.data = f"{event.data}\n{value}" if event.data else value
            elif key == "retry":
                self.retry = int(value)
        return None

    def rest(self) -> list[Event]:
        out = []
        while (event := self.next()) is not None:
            out.append(event)
        return out


@contextlib.contextmanager
def open_stream(base_url: str, job_id: str, **headers: str) -> Iterator[EventReader]:
    with (
        httpx.Client(base_url=base_url, timeout=httpx.Timeout(10, read=10)) as client,
        client.stream("GET", f"/jobs/{job_id}/events", headers={"Accept": "text/event-stream", **headers}) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        yield EventReader(response)


def watching(app: FastAPI) -> int:
    """Streams (and long polls) this API process has waiting for a change (backend/changes.py)."""
    return int(app.state.changes.waiting)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


# --- the stream -------------------------------------------------------------------------------


def test_events_follow_every_step_in_order_and_the_stream_ends_on_success(
    base_url: str, app: FastAPI, store: JobStore
) -> None:
    job_id = new_job(store)
    steps = [
        {"status": JobStatus.RUNNING, "stage": JobStage.FETCHING, "started_at": now(), "heartbeat_at": now()},
        {"stage": JobStage.ANALYZING, "progress": 0.05, "frames_total": 30},
        {"progress": 0.3, "frames_done": 15},
        {"progress": 0.6, "frames_done": 30},
        {"stage": JobStage.RENDERING, "progress": 0.75, "frames_done": 15},
        {"status": JobStatus.SUCCEEDED, "stage": JobStage.DONE, "progress": 1.0, "finished_at": now(), "results": []},
    ]
    seen: list[tuple[str, str, float]] = []
    with open_stream(base_url, job_id) as stream:
        first = stream.next()
        assert first is not None and first.name == "message"
        assert first.job["job_id"] == job_id and first.job["status"] == "queued", "the current state comes first"
        assert stream.retry is not None and stream.retry > 0
        assert watching(app) == 1, "the stream waits for the job's changes"
        for step in steps:
            # A heartbeat-only write changes nothing a client sees: no event for it.
            if first.job["status"] == "running":
                assert store.update(job_id, heartbeat_at=now())
            assert store.update(job_id, **step)
            event = stream.next()
            assert event is not None, f"the stream ended before {step}"
            view = event.job
            seen.append((view["status"], view["stage"], view["progress"]))
            first = event
        # The view is the same JSON as GET /jobs/{id}.
        assert first.job == httpx.get(f"{base_url}/jobs/{job_id}").json()
        assert stream.next() is None, "the stream ends after the final status"
    assert seen == [
        ("running", "fetching", 0.0),
        ("running", "analyzing", 0.05),
        ("running", "analyzing", 0.3),
        ("running", "analyzing", 0.6),
        ("running", "rendering", 0.75),
        ("succeeded", "done", 1.0),
    ]
    assert wait_for(lambda: watching(app) == 0), "the stream stops waiting once it ends"


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED])
def test_a_finished_job_gets_one_event_and_the_stream_ends(base_url: str, store: JobStore, status: JobStatus) -> None:
    error = {"code": "INVALID_VIDEO", "message": "The file is not a video we can read.", "details": {}}
    job_id = new_job(store, status=status, finished_at=now(), error=error if status is JobStatus.FAILED else None)
    with open_stream(base_url, job_id) as stream:
        events_ = stream.rest()
    assert [e.job["status"] for e in events_] == [status.value]
    if status is JobStatus.FAILED:
        assert events_[0].job["error"] == error


def test_a_real_mock_job_streams_to_success(base_url: str, store: JobStore, settings: Settings, tmp_path: Path) -> None:
    """The worker's own reporting (in this process), seen through the stream from queued to succeeded."""
    clip = make_clip(tmp_path / "clip.mp4", seconds=3, fps=15)
    with clip.open("rb") as handle:
        accepted = httpx.post(f"{base_url}/analyze", files={"file": ("clip.mp4", handle, "video/mp4")}, timeout=30)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    ctx = build_context(settings, analyzer=MockAnalyzer())
    with open_stream(base_url, job_id) as stream:
        first = stream.next()
        assert first is not None and first.job["status"] == "queued"
        worker = threading.Thread(target=run, args=(ctx, job_id))
        worker.start()
        views = [first.job, *(e.job for e in stream.rest())]
        worker.join(60)
    statuses = [v["status"] for v in views]
    assert statuses[-1] == "succeeded", views[-1]
    assert set(statuses) == {"queued", "running", "succeeded"}
    progress = [v["progress"] for v in views]
    assert progress == sorted(progress), "progress only moves forward"
    assert len({v["stage"] for v in views}) >= 4, [v["stage"] for v in views]
    assert set(views[-1]["results"]) == {"annotated.mp4", "poses.json", "poses.csv", "metrics.json", "beats.json"}


def test_a_missed_message_is_caught_by_the_periodic_recheck(base_url: str, store: JobStore, fast_checks: None) -> None:
    job_id = new_job(store)
    with open_stream(base_url, job_id) as stream:
        assert stream.next().job["status"] == "queued"  # type: ignore[union-attr]
        # Write behind the store's back: no PUBLISH, so only the re-check can see it.
        store.redis.hset(store.keys.job(job_id), mapping={"status": "canceled", "finished_at": str(now())})
        started = time.monotonic()
        event = stream.next()
        assert event is not None and event.job["status"] == "canceled"
        assert time.monotonic() - started < 3
        assert stream.next() is None


def test_a_silent_worker_is_detected_while_watching(
    service_settings: Settings, store: JobStore, fast_checks: None
) -> None:
    settings = service_settings.model_copy(update={"worker_presence_ttl_seconds": 10})
    last_beat = now() - 9.0  # silent too long one second from now, and no worker holds it
    job_id = new_job(
        store,
        status=JobStatus.RUNNING,
        stage=JobStage.ANALYZING,
        started_at=last_beat,
        heartbeat_at=last_beat,
        worker="gone",
        attempts=1,
        max_attempts=1,  # its last attempt: the loss fails it
    )
    with live_api(settings) as url, open_stream(url, job_id) as stream:
        assert stream.next().job["status"] == "running"  # type: ignore[union-attr]
        event = stream.next()
        assert event is not None
        assert event.job["status"] == "failed"
        assert event.job["error"]["code"] == "WORKER_LOST"
        assert stream.next() is None


def test_keep_alive_comments_while_nothing_happens(base_url: str, store: JobStore, fast_checks: None) -> None:
    job_id = new_job(store)
    with open_stream(base_url, job_id) as stream:
        assert stream.next().job["status"] == "queued"  # type: ignore[union-attr]
        comment = stream.next(skip_comments=False)
        assert comment is not None and comment.data == "" and comment.comments, comment


def test_a_client_that_leaves_stops_the_stream(base_url: str, app: FastAPI, store: JobStore) -> None:
    job_id = new_job(store, status=JobStatus.RUNNING, started_at=now(), heartbeat_at=now())
    with open_stream(base_url, job_id) as stream:
        assert stream.next().job["status"] == "running"  # type: ignore[union-attr]
        assert watching(app) == 1
        # Polling keeps working beside an open stream.
        assert httpx.get(f"{base_url}/jobs/{job_id}").json()["status"] == "running"
    # The client hung up mid-stream (the job still runs): the server notices and unsubscribes.
    assert wait_for(lambda: watching(app) == 0, timeout=5), "the stream outlived its client"


def test_many_clients_come_and_go_without_leaking(base_url: str, app: FastAPI, store: JobStore) -> None:
    job_id = new_job(store)
    for _ in range(3):
        with contextlib.ExitStack() as stack:
            streams = [stack.enter_context(open_stream(base_url, job_id)) for _ in range(4)]
            for stream in streams:
                assert stream.next().job["status"] == "queued"  # type: ignore[union-attr]
            assert watching(app) == 4
            store.update(
                job_id, status=JobStatus.RUNNING, stage=JobStage.FETCHING, started_at=now(), heartbeat_at=now()
            )
            for stream in streams:
                assert stream.next().job["status"] == "running"  # type: ignore[union-attr]
            store.update(job_id, status=JobStatus.QUEUED, stage=JobStage.QUEUED)  # back, for the next round
            for stream in streams:
                assert stream.next().job["status"] == "queued"  # type: ignore[union-attr]
        assert wait_for(lambda: watching(app) == 0, timeout=5)


def test_deleting_the_job_ends_the_stream_with_a_deleted_event(base_url: str, store: JobStore) -> None:
    job_id = new_job(store)
    with open_stream(base_url, job_id) as stream:
        assert stream.next().job["status"] == "queued"  # type: ignore[union-attr]
        assert httpx.delete(f"{base_url}/jobs/{job_id}").status_code == 204
        event = stream.next()
        # DELETE cancels a queued job first (one event), then removes it.
        if event is not None and event.name == "message":
            assert event.job["status"] == "canceled"
            event = stream.next()
        # Canceled is final, so the stream may already have ended; otherwise it says `deleted`.
        if event is not None:
            assert event.name == "deleted" and json.loads(event.data) == {"job_id": job_id}
            assert stream.next() is None


def test_unknown_job_is_a_404_envelope(base_url: str) -> None:
    for job_id in ("0" * 32, "not-a-job-id"):
        response = httpx.get(f"{base_url}/jobs/{job_id}/events", headers={"Accept": "text/event-stream"})
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert set(body) == {"error"}
        assert body["error"]["code"] == "JOB_NOT_FOUND"
        assert body["error"]["message"]
        assert body["error"]["details"] == {"job_id": job_id}


def test_redis_down_is_a_503_envelope(service_settings: Settings) -> None:
    settings = service_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with live_api(settings) as url:
        response = httpx.get(f"{url}/jobs/{'0' * 32}/events", timeout=15)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "QUEUE_UNAVAILABLE"


# --- a frontend on another origin (CORS) --------------------------------------------------------


def test_cors_lets_the_configured_frontend_origin_in(base_url: str, store: JobStore) -> None:
    job_id = new_job(store, status=JobStatus.SUCCEEDED, finished_at=now())
    origin = {"Origin": FRONTEND}
    listing = httpx.get(f"{base_url}/jobs", headers=origin)
    assert listing.status_code == 200
    assert listing.headers["access-control-allow-origin"] == FRONTEND
    # The browser's preflight for an upload and for a delete.
    for method in ("POST", "DELETE"):
        preflight = httpx.options(
            f"{base_url}/analyze" if method == "POST" else f"{base_url}/jobs/{job_id}",
            headers={
                **origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == FRONTEND
        assert method in preflight.headers["access-control-allow-methods"]
    # The event stream is readable cross-origin too (EventSource sends an Origin header).
    with open_stream(base_url, job_id, **origin) as stream:
        assert stream.response.headers["access-control-allow-origin"] == FRONTEND
        assert [e.job["status"] for e in stream.rest()] == ["succeeded"]
    # Errors carry the header as well, so the page can read the envelope.
    missing = httpx.get(f"{base_url}/jobs/{'0' * 32}", headers=origin)
    assert missing.status_code == 404 and missing.headers["access-control-allow-origin"] == FRONTEND


def test_cors_keeps_other_origins_out(base_url: str) -> None:
    response = httpx.get(f"{base_url}/jobs", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    preflight = httpx.options(
        f"{base_url}/analyze", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers


# --- the web page ----------------------------------------------------------------------------


def test_the_web_page_is_served_and_linked_from_the_service_json(base_url: str) -> None:
    info = httpx.get(f"{base_url}/").json()
    assert info["web"] == "/app/"
    assert {"service", "version", "mode", "docs"} <= set(info), "the service JSON keeps its fields"
    page = httpx.get(f"{base_url}/app/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="file-input"' in page.text
    for asset, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        response = httpx.get(f"{base_url}/app/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"], asset
    assert httpx.get(f"{base_url}/app", follow_redirects=True).url.path == "/app/"
    missing = httpx.get(f"{base_url}/app/nope.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
