"""The API against a real Redis server and a real S3 server (SeaweedFS).

The worker runs in-process (`worker.tasks.run`) so each test controls when a
job moves; the end-to-end tests run it as its own process.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from shared.errors import ServiceError
from shared.result_schemas import validate
from shared.settings import Settings
from shared.storage import Storage
from tests.synthetic import make_clip, truncated_copy
from worker.analysis.mock import MockAnalyzer
from worker.context import WorkerContext, build_context
from worker.tasks import run

pytestmark = pytest.mark.service

CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"
CLOSED_PORT_S3 = "http://127.0.0.1:1"


@pytest.fixture
def settings(service_settings: Settings) -> Settings:
    return service_settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def worker_ctx(settings: Settings) -> WorkerContext:
    return build_context(settings, analyzer=MockAnalyzer())


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("api") / "dance.mp4", seconds=2, fps=15, audio=True)


def upload(client: TestClient, path: Path, name: str | None = None, **fields: str) -> dict:
    with path.open("rb") as handle:
        response = client.post("/analyze", files={"file": (name or path.name, handle, "video/mp4")}, data=fields)
    return {"status": response.status_code, "body": response.json(), "headers": response.headers}


def stored_keys(settings: Settings) -> list[str]:
    return Storage(settings).list_keys("")


def pending_multipart_uploads(settings: Settings) -> list[str]:
    storage = Storage(settings)
    response = storage.client.list_multipart_uploads(Bucket=storage.bucket)
    return [item["Key"] for item in response.get("Uploads", [])]


def assert_error(response_status: int, body: dict, status: int, code: str) -> None:
    assert response_status == status, body
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)


# --- the happy path ----------------------------------------------------------------------


def test_upload_runs_to_success_with_every_result(
    client: TestClient, settings: Settings, worker_ctx: WorkerContext, clip: Path
) -> None:
    accepted = upload(client, clip, profile="fast")
    assert accepted["status"] == 202
    body = accepted["body"]
    assert body["status"] == "queued"
    assert body["status_url"].endswith(f"/jobs/{body['job_id']}")
    job_id = body["job_id"]

    queued = client.get(f"/jobs/{job_id}").json()
    assert queued["status"] == "queued" and queued["results"] == {}
    assert queued["filename"] == "dance.mp4" and queued["size_bytes"] == clip.stat().st_size
    assert stored_keys(settings) == [f"uploads/{job_id}/source.mp4"]

    assert run(worker_ctx, job_id) == "succeeded"

    done = client.get(f"/jobs/{job_id}").json()
    assert done["status"] == "succeeded" and done["stage"] == "done" and done["progress"] == 1.0
    assert done["frames_total"] == done["frames_done"] == 30 and done["error"] is None
    assert done["started_at"] and done["finished_at"] >= done["started_at"]
    assert set(done["results"]) == {"annotated.mp4", "poses.json", "poses.csv", "metrics.json", "beats.json"}
    assert done["video"]["frame_count"] == 30 and done["video"]["has_audio"] is True

    poses = client.get(f"/jobs/{job_id}/results/poses.json")
    assert poses.status_code == 200 and poses.headers["content-type"] == "application/json"
    validate("poses", poses.json())
    validate("metrics", client.get(f"/jobs/{job_id}/results/metrics.json").json())

    partial = client.get(f"/jobs/{job_id}/results/annotated.mp4", headers={"Range": "bytes=0-99"})
    assert partial.status_code == 206
    assert partial.headers["content-range"].startswith("bytes 0-99/")
    assert len(partial.content) == 100 and partial.content[4:8] == b"ftyp"


def test_result_links_work_from_the_client_side(
    client: TestClient, settings: Settings, worker_ctx: WorkerContext, clip: Path
) -> None:
    job_id = upload(client, clip)["body"]["job_id"]
    run(worker_ctx, job_id)
    results = client.get(f"/jobs/{job_id}").json()["results"]
    # Presigned for the public endpoint: fetched here with no credentials.
    assert results["poses.json"].startswith(settings.s3_public_endpoint_url)
    with urllib.request.urlopen(results["poses.json"], timeout=10) as response:
        assert json.loads(response.read())["job_id"] == job_id


def test_without_public_endpoint_results_go_through_the_api(
    settings: Settings, worker_ctx: WorkerContext, clip: Path
) -> None:
    private = settings.model_copy(update={"s3_public_endpoint_url": "", "public_base_url": "http://api.example"})
    with TestClient(create_app(private)) as api:
        job_id = upload(api, clip)["body"]["job_id"]
        run(worker_ctx, job_id)
        results = api.get(f"/jobs/{job_id}").json()["results"]
    assert results["metrics.json"] == f"http://api.example/jobs/{job_id}/results/metrics.json"


# --- bad uploads: a clear code each, and nothing left behind --------------------------------


def _nothing_left(settings: Settings, client: TestClient) -> None:
    assert stored_keys(settings) == []
    assert pending_multipart_uploads(settings) == []
    assert client.get("/jobs").json()["total"] == 0


def test_empty_file(client: TestClient, settings: Settings, tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    result = upload(client, empty)
    assert_error(result["status"], result["body"], 422, "EMPTY_UPLOAD")
    _nothing_left(settings, client)


def test_text_file_named_mp4(client: TestClient, settings: Settings, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is a shopping list, not a dance video\n" * 1000)
    result = upload(client, text)
    assert_error(result["status"], result["body"], 415, "UNSUPPORTED_MEDIA")
    _nothing_left(settings, client)


def test_oversized_upload_is_aborted_midway(settings: Settings, clip: Path, tmp_path: Path) -> None:
    small = settings.model_copy(update={"max_upload_mb": 6, "upload_part_mb": 5})
    big = tmp_path / "big.mp4"
    big.write_bytes(clip.read_bytes() + b"\x00" * (7 * 1024 * 1024))  # a real header, then too many bytes
    with TestClient(create_app(small)) as api:
        result = upload(api, big)
        assert_error(result["status"], result["body"], 413, "UPLOAD_TOO_LARGE")
        # A part was already stored when the cap was hit: the abort removed it.
        _nothing_left(small, api)


def test_declared_length_over_the_cap_is_refused_before_reading(settings: Settings) -> None:
    small = settings.model_copy(update={"max_upload_mb": 1})
    with TestClient(create_app(small)) as api:
        response = api.post(
            "/analyze",
            content=b"x" * 10,
            headers={"content-type": "multipart/form-data; boundary=x", "content-length": str(50 * 1024 * 1024)},
        )
    assert_error(response.status_code, response.json(), 413, "UPLOAD_TOO_LARGE")


def test_missing_file_and_bad_profile_and_wrong_content_type(
    client: TestClient, settings: Settings, clip: Path
) -> None:
    response = client.post("/analyze", data={"profile": "fast"}, files={"other": ("x.txt", b"abc")})
    assert_error(response.status_code, response.json(), 422, "MISSING_FILE")
    result = upload(client, clip, profile="turbo")
    assert_error(result["status"], result["body"], 422, "INVALID_PROFILE")
    response = client.post("/analyze", json={"file": "dance.mp4"})
    assert_error(response.status_code, response.json(), 422, "VALIDATION_ERROR")
    _nothing_left(settings, client)


def test_truncated_mp4_fails_the_job_with_invalid_video(
    client: TestClient, settings: Settings, worker_ctx: WorkerContext, clip: Path, tmp_path: Path
) -> None:
    cut = truncated_copy(clip, tmp_path / "cut.mp4", keep=0.5)
    job_id = upload(client, cut)["body"]["job_id"]
    with pytest.raises(ServiceError):  # re-raised so RQ files it under failed jobs
        run(worker_ctx, job_id)
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "INVALID_VIDEO"
    assert "incomplete" in job["error"]["message"] or "video" in job["error"]["message"]
    assert job["results"] == {}
    assert not [key for key in stored_keys(settings) if key.startswith("results/")]


# --- unknown things, cancel and delete ------------------------------------------------------------


def test_unknown_job_route_and_query_use_the_envelope(client: TestClient) -> None:
    response = client.get("/jobs/0123456789abcdef0123456789abcdef")
    assert_error(response.status_code, response.json(), 404, "JOB_NOT_FOUND")
    response = client.get("/jobs/not-an-id")
    assert_error(response.status_code, response.json(), 404, "JOB_NOT_FOUND")
    response = client.get("/no/such/route")
    assert_error(response.status_code, response.json(), 404, "NOT_FOUND")
    response = client.get("/jobs?limit=0")
    assert_error(response.status_code, response.json(), 422, "VALIDATION_ERROR")
    response = client.post("/jobs/0123456789abcdef0123456789abcdef/cancel")
    assert_error(response.status_code, response.json(), 404, "JOB_NOT_FOUND")


def test_cancel_of_a_finished_job(client: TestClient, worker_ctx: WorkerContext, clip: Path) -> None:
    job_id = upload(client, clip)["body"]["job_id"]
    run(worker_ctx, job_id)
    response = client.post(f"/jobs/{job_id}/cancel")
    assert_error(response.status_code, response.json(), 409, "JOB_ALREADY_FINISHED")
    assert client.get(f"/jobs/{job_id}").json()["status"] == "succeeded"


def test_canceled_queued_job_never_runs(client: TestClient, worker_ctx: WorkerContext, clip: Path) -> None:
    job_id = upload(client, clip)["body"]["job_id"]
    canceled = client.post(f"/jobs/{job_id}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert run(worker_ctx, job_id) == "canceled"
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "canceled" and job["started_at"] is None


def test_running_job_stops_within_seconds_of_cancel(
    client: TestClient, settings: Settings, worker_ctx: WorkerContext, tmp_path: Path
) -> None:
    long_clip = make_clip(tmp_path / "long.mp4", seconds=20, fps=30, size=(640, 360))
    job_id = upload(client, long_clip)["body"]["job_id"]
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(run(worker_ctx, job_id)))
    thread.start()
    deadline = time.monotonic() + 30
    while client.get(f"/jobs/{job_id}").json()["frames_done"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get(f"/jobs/{job_id}").json()["status"] == "running"

    delete = client.delete(f"/jobs/{job_id}")
    assert_error(delete.status_code, delete.json(), 409, "JOB_RUNNING")

    asked = time.monotonic()
    assert client.post(f"/jobs/{job_id}/cancel").json()["status"] == "canceled"
    thread.join(timeout=30)
    stopped_after = time.monotonic() - asked
    assert outcome == ["canceled"]
    assert stopped_after < 5, f"the worker took {stopped_after:.1f} s to stop"
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "canceled" and job["results"] == {}
    assert not [key for key in stored_keys(settings) if key.startswith("results/")]


def test_delete_removes_record_and_every_object(
    client: TestClient, settings: Settings, worker_ctx: WorkerContext, clip: Path
) -> None:
    job_id = upload(client, clip)["body"]["job_id"]
    run(worker_ctx, job_id)
    assert len(stored_keys(settings)) == 6
    assert client.delete(f"/jobs/{job_id}").status_code == 204
    assert stored_keys(settings) == []
    response = client.get(f"/jobs/{job_id}")
    assert_error(response.status_code, response.json(), 404, "JOB_NOT_FOUND")


def test_list_is_newest_first_paginated_and_filtered(client: TestClient, worker_ctx: WorkerContext, clip: Path) -> None:
    ids = [upload(client, clip)["body"]["job_id"] for _ in range(3)]
    run(worker_ctx, ids[0])
    page = client.get("/jobs?limit=2").json()
    assert page["total"] == 3 and [job["job_id"] for job in page["jobs"]] == ids[::-1][:2]
    assert [job["job_id"] for job in client.get("/jobs?offset=2").json()["jobs"]] == [ids[0]]
    succeeded = client.get("/jobs?status=succeeded").json()
    assert succeeded["total"] == 1 and succeeded["jobs"][0]["job_id"] == ids[0]
    assert client.get("/jobs?status=queued").json()["total"] == 2


def test_a_running_job_whose_worker_is_gone_is_queued_again_then_failed_after_max_attempts(
    client: TestClient, worker_ctx: WorkerContext, clip: Path, settings: Settings
) -> None:
    job_id = upload(client, clip)["body"]["job_id"]
    assert client.get(f"/jobs/{job_id}").json()["max_attempts"] == settings.max_attempts == 3
    for attempt in range(1, settings.max_attempts + 1):
        # A worker that took the job, then went silent (no presence key: it died).
        assert worker_ctx.store.start(job_id, worker="dead-worker")
        old = time.time() - settings.worker_presence_ttl_seconds - 1
        worker_ctx.store.update(job_id, heartbeat_at=old)
        job = client.get(f"/jobs/{job_id}").json()
        assert job["attempts"] == attempt
        if attempt < settings.max_attempts:
            assert job["status"] == "queued" and job["error"] is None
            assert "stopped" in job["retry_reason"]
            # ...and RQ holds it again, so a worker will run it.
            assert worker_ctx.queue.get_job_ids() == [job_id]
    assert job["status"] == "failed" and job["error"]["code"] == "WORKER_LOST"
    assert job["error"]["details"]["attempts"] == settings.max_attempts


def test_a_running_job_whose_worker_is_alive_is_left_alone(
    client: TestClient, worker_ctx: WorkerContext, clip: Path, settings: Settings
) -> None:
    from shared.presence import WorkerPresence

    job_id = upload(client, clip)["body"]["job_id"]
    presence = WorkerPresence(worker_ctx.redis, worker_ctx.store.keys, "live-worker", ttl_seconds=30)
    presence.hold(job_id)
    assert worker_ctx.store.start(job_id, worker="live-worker")
    # Its progress heartbeat is late (a long stage), but the worker says it holds the job.
    worker_ctx.store.update(job_id, heartbeat_at=time.time() - settings.worker_presence_ttl_seconds - 1)
    assert client.get(f"/jobs/{job_id}").json()["status"] == "running"
    presence.hold("some-other-job")  # it moved on without finishing this one
    assert client.get(f"/jobs/{job_id}").json()["status"] == "queued"


# --- dependencies down -------------------------------------------------------------------------------


def test_health_reports_each_dependency(client: TestClient, settings: Settings) -> None:
    healthy = client.get("/health")
    assert healthy.status_code == 200
    assert healthy.json()["dependencies"] == {"redis": "ok", "storage": "ok"}
    for broken, down in (({"redis_url": CLOSED_PORT_REDIS}, "redis"), ({"s3_endpoint_url": CLOSED_PORT_S3}, "storage")):
        with TestClient(create_app(settings.model_copy(update=broken))) as api:
            response = api.get("/health")
        assert response.status_code == 503
        assert response.json()["dependencies"][down] == "error"
        # Why, but not where: /health answers anyone, and the servers' addresses are the operator's.
        assert response.json()["details"][down] and "127.0.0.1" not in response.text


def test_redis_down_gives_503_and_leaves_no_object(settings: Settings, clip: Path) -> None:
    with TestClient(create_app(settings.model_copy(update={"redis_url": CLOSED_PORT_REDIS}))) as api:
        result = upload(api, clip)
    assert_error(result["status"], result["body"], 503, "QUEUE_UNAVAILABLE")
    assert "127.0.0.1" not in json.dumps(result["body"]) and "<address>" in json.dumps(result["body"])
    assert stored_keys(settings) == []
    assert pending_multipart_uploads(settings) == []


def test_storage_down_gives_503_and_leaves_no_job(settings: Settings, client: TestClient, clip: Path) -> None:
    with TestClient(create_app(settings.model_copy(update={"s3_endpoint_url": CLOSED_PORT_S3}))) as api:
        result = upload(api, clip)
    assert_error(result["status"], result["body"], 503, "STORAGE_UNAVAILABLE")
    assert "127.0.0.1" not in json.dumps(result["body"])
    assert client.get("/jobs").json()["total"] == 0


def test_service_info_and_openapi(client: TestClient) -> None:
    info = client.get("/").json()
    assert info["service"] == "dance-analysis" and info["mode"] in {"mock", "real"}
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/analyze", "/jobs", "/jobs/{job_id}", "/jobs/{job_id}/cancel", "/health"} <= set(paths)
    assert "multipart/form-data" in paths["/analyze"]["post"]["requestBody"]["content"]


def test_redis_lost_mid_upload_leaves_no_object(
    client: TestClient, settings: Settings, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    def refuse(*_: object, **__: object) -> None:
        raise redis.exceptions.ConnectionError("connection lost")

    monkeypatch.setattr(client.app.state.store, "create", refuse)  # type: ignore[attr-defined]
    result = upload(client, clip)
    assert_error(result["status"], result["body"], 503, "QUEUE_UNAVAILABLE")
    assert stored_keys(settings) == []


def test_enqueue_failure_leaves_neither_object_nor_job(
    client: TestClient, settings: Settings, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.routes import compare

    def refuse(*_: object, **__: object) -> None:
        raise ConnectionError("queue gone")

    monkeypatch.setattr(compare, "enqueue_job", refuse)
    result = upload(client, clip)
    assert_error(result["status"], result["body"], 503, "QUEUE_UNAVAILABLE")
    assert stored_keys(settings) == []
    assert client.get("/jobs").json()["total"] == 0


def test_client_that_disconnects_mid_upload_leaves_nothing(settings: Settings, clip: Path) -> None:
    import socket

    import uvicorn

    from tests.services import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        boundary = "cut"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        body_size = 40 * 1024 * 1024
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                "POST /analyze HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {body_size}\r\n\r\n".encode()
            )
            sock.sendall(head + clip.read_bytes() + b"\0" * (12 * 1024 * 1024))  # two 5 MB parts stored
            # Wait until storage holds an unfinished upload, then vanish.
            while not pending_multipart_uploads(settings) and time.monotonic() < deadline + 20:
                time.sleep(0.05)
            assert pending_multipart_uploads(settings), "the upload never reached storage"
        deadline = time.monotonic() + 20
        while pending_multipart_uploads(settings) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pending_multipart_uploads(settings) == []
        assert stored_keys(settings) == []
    finally:
        server.should_exit = True
        thread.join(timeout=10)
