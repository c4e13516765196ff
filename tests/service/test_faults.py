"""Nothing is lost when things fail: real Redis, real S3, real worker processes, real signals.

Each test breaks one thing the way it breaks in production (SIGKILL of a
worker, `kill -9` of Redis, a cold shutdown, storage unreachable mid-upload)
and checks the promise: an accepted upload ends as results or as a clear
error, the job never stays `running` or `queued` for nobody, and no part of a
result set or of a multipart upload is left behind.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from rq.job import Job
from rq.serializers import JSONSerializer

from backend.main import create_app
from shared.jobs import JobStatus, JobStore
from shared.keys import RedisKeys, result_key, results_prefix
from shared.queue import get_queue
from shared.settings import Settings
from shared.storage import Storage
from tests.processes import live_api, wait_for, worker_process
from tests.proxy import TcpProxy
from tests.services import S3Server, launch_redis
from tests.synthetic import make_clip

pytestmark = pytest.mark.service


@pytest.fixture
def settings(service_settings: Settings) -> Settings:
    # Short enough that a test sees a loss within seconds; the defaults are 15 s and 10 s.
    return service_settings.model_copy(update={"worker_presence_ttl_seconds": 3, "reconcile_interval_seconds": 1.0})


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Long enough (several seconds of mock analysis and rendering) to be killed midway.
    return make_clip(tmp_path_factory.mktemp("faults") / "long.mp4", seconds=12, fps=30, size=(960, 540))


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def submit(api: TestClient, clip: Path) -> str:
    response = api.post("/analyze", files={"file": (clip.name, clip.read_bytes(), "video/mp4")})
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def job(api: TestClient, job_id: str) -> dict:
    # A 503 is right while Redis is down (these tests take it down); a few in a row are tolerated.
    for _ in range(10):
        response = api.get(f"/jobs/{job_id}")
        if response.status_code != 503:
            break
        time.sleep(0.3)
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_final(api: TestClient, job_id: str, timeout: float = 120) -> dict:
    wait_for(lambda: job(api, job_id)["status"] in ("succeeded", "failed", "canceled"), timeout, f"job {job_id} to end")
    return job(api, job_id)


def wait_running(api: TestClient, job_id: str, stages: tuple[str, ...] = ("analyzing", "rendering")) -> dict:
    wait_for(lambda: job(api, job_id)["stage"] in stages, 60, f"job {job_id} to reach {stages}", every=0.02)
    return job(api, job_id)


def stored(storage: Storage, job_id: str) -> list[str]:
    return sorted(key.rsplit("/", 1)[1] for key in storage.list_keys(results_prefix(job_id)))


def open_uploads(storage: Storage, prefix: str) -> list[tuple[str, str]]:
    return storage.open_multipart_uploads(prefix)


# --- 2. a dead worker: restarted, and its job run again --------------------------------------


def test_a_sigkilled_worker_is_restarted_by_its_supervisor_and_its_job_run_again(
    api: TestClient, settings: Settings, long_clip: Path, tmp_path: Path
) -> None:
    storage: Storage = api.app.state.storage  # type: ignore[attr-defined]
    with worker_process(settings, tmp_path, supervised=True) as worker:
        first = worker.child_pid()
        job_id = submit(api, long_clip)
        wait_running(api, job_id)
        os.kill(first, signal.SIGKILL)
        killed_at = time.monotonic()

        # The supervisor sees the exit and releases the job at once, without waiting for a TTL.
        wait_for(lambda: job(api, job_id)["attempts"] == 2 or job(api, job_id)["status"] == "queued", 30,
                 "the job to be released")  # fmt: skip
        released_after = time.monotonic() - killed_at
        done = wait_final(api, job_id)

        assert done["status"] == "succeeded", done
        assert done["attempts"] == 2 and "exited" in done["retry_reason"]
        assert released_after < settings.heartbeat_timeout_seconds
        assert worker.process.poll() is None  # the supervisor lives on...
        assert worker.child_pid() != first  # ...with a new worker
        assert "was killed by SIGKILL" in worker.log_text()
        # Exactly one result set, complete, and nothing half-uploaded.
        assert stored(storage, job_id) == sorted(done["results"])
        assert len(done["results"]) == 5
        assert open_uploads(storage, results_prefix(job_id)) == []
        # RQ agrees: the run that finished is the one it shows.
        rq_job = Job.fetch(job_id, connection=api.app.state.redis, serializer=JSONSerializer)  # type: ignore[attr-defined]
        assert rq_job.get_status() == "finished"


def test_without_a_supervisor_another_worker_takes_over_once_the_presence_expires(
    api: TestClient, settings: Settings, long_clip: Path, tmp_path: Path
) -> None:
    with worker_process(settings, tmp_path, name="first") as first:
        pid = first.child_pid()
        job_id = submit(api, long_clip)
        wait_running(api, job_id)
        scratch = [p for p in tmp_path.glob(f"job-{job_id}-*") if p.is_dir()]
        assert scratch, "the running job has a scratch folder"
        os.kill(pid, signal.SIGKILL)
        first.process.wait(10)
        killed_at = time.monotonic()
        with worker_process(settings, tmp_path, name="second"):
            done = wait_final(api, job_id)
            taken_over_after = time.monotonic() - killed_at
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    # Well under the old 120 s: the presence TTL (3 s here) plus one sweep.
    assert taken_over_after < settings.heartbeat_timeout_seconds
    # The killed run's scratch folder was removed by the worker that started after it.
    assert not any(p.exists() for p in scratch)


def test_a_job_whose_worker_keeps_dying_fails_after_max_attempts_with_nothing_left(
    api: TestClient, settings: Settings, long_clip: Path
) -> None:
    storage: Storage = api.app.state.storage  # type: ignore[attr-defined]
    reconciler = api.app.state.reconciler  # type: ignore[attr-defined]
    store: JobStore = api.app.state.store  # type: ignore[attr-defined]
    job_id = submit(api, long_clip)
    for attempt in range(1, settings.max_attempts + 1):
        assert store.start(job_id, worker=f"doomed-{attempt}")
        # What a kill in the uploading stage leaves: 3 of 4 result files and an unfinished upload.
        for name in ("poses.json", "poses.csv", "metrics.json"):
            storage.client.put_object(Bucket=storage.bucket, Key=result_key(job_id, name), Body=b"{}")
        big = storage.multipart_writer(result_key(job_id, "annotated.mp4"), "video/mp4")
        big.send_part(b"x" * 5 * 1024 * 1024)
        store.update(job_id, heartbeat_at=time.time() - 60)
        status = reconciler.check(store.get(job_id)).status
        assert stored(storage, job_id) == [] and open_uploads(storage, results_prefix(job_id)) == []
        assert status is (JobStatus.QUEUED if attempt < settings.max_attempts else JobStatus.FAILED)
    failed = job(api, job_id)
    assert failed["error"]["code"] == "WORKER_LOST" and failed["results"] == {}
    rq_job = Job.fetch(job_id, connection=store.redis, serializer=JSONSerializer)
    assert rq_job.get_status() == "failed"  # the dashboard shows what the API shows


# --- 1. Redis: restarts keep every job, and workers live through them ----------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[dict]:
    """A persistent Redis of this test's own, which the test may kill and start again."""
    state: dict = {"dir": tmp_path / "redis"}
    state["dir"].mkdir()
    state["server"] = launch_redis(state["dir"], persistent=True)
    yield state
    state["server"].stop()


def restart_redis(state: dict, *, kill: bool = True, down_for: float = 0.0) -> None:
    server = state["server"]
    if kill:
        server.server.process.send_signal(signal.SIGKILL)
        server.server.process.wait(10)
    time.sleep(down_for)
    state["server"] = launch_redis(state["dir"], persistent=True, port=server.port)


def test_records_and_queued_jobs_survive_a_kill_9_of_redis(
    own_redis: dict, service_settings: Settings, long_clip: Path, tmp_path: Path
) -> None:
    settings = service_settings.model_copy(update={"redis_url": own_redis["server"].url})
    with TestClient(create_app(settings)) as api:
        job_ids = [submit(api, long_clip) for _ in range(2)]
        time.sleep(1.5)  # appendfsync everysec: what was acknowledged a second ago is on disk
        restart_redis(own_redis)
        for job_id in job_ids:
            assert job(api, job_id)["status"] == "queued"
        assert get_queue(settings, api.app.state.redis).get_job_ids() == job_ids  # type: ignore[attr-defined]
        with worker_process(settings, tmp_path):
            assert [wait_final(api, job_id)["status"] for job_id in job_ids] == ["succeeded", "succeeded"]


def test_a_worker_lives_through_redis_going_away_idle_and_mid_job(
    own_redis: dict, service_settings: Settings, long_clip: Path, tmp_path: Path
) -> None:
    # The default presence TTL (15 s): an outage shorter than that is not a lost worker.
    settings = service_settings.model_copy(update={"redis_url": own_redis["server"].url})
    with worker_process(settings, tmp_path) as worker:  # not supervised: it must survive on its own
        worker.child_pid()
        restart_redis(own_redis, down_for=2.0)  # while idle
        with TestClient(create_app(settings)) as api:
            job_id = submit(api, long_clip)
            assert wait_final(api, job_id)["status"] == "succeeded"

            job_id = submit(api, long_clip)
            wait_running(api, job_id)
            restart_redis(own_redis, down_for=2.0)  # mid-job
            done = wait_final(api, job_id)
        assert done["status"] == "succeeded", (done, worker.log_text()[-3000:])
        assert worker.process.poll() is None, worker.log_text()[-3000:]


# --- 3. RQ's view and the record agree ----------------------------------------------------------


def test_a_cold_shutdown_puts_the_running_job_back_in_the_queue(
    api: TestClient, settings: Settings, long_clip: Path, tmp_path: Path
) -> None:
    with worker_process(settings, tmp_path) as worker:
        worker.child_pid()
        job_id = submit(api, long_clip)
        wait_running(api, job_id)
        worker.process.send_signal(signal.SIGTERM)  # warm: finish the job...
        time.sleep(1.2)  # (RQ ignores a second signal within a second)
        worker.process.send_signal(signal.SIGTERM)  # ...cold: stop now
        worker.process.wait(30)
    back = job(api, job_id)
    assert back["status"] == "queued" and back["attempts"] == 1, back
    assert "shut down" in back["retry_reason"]
    with worker_process(settings, tmp_path, name="next"):
        done = wait_final(api, job_id)
    assert done["status"] == "succeeded" and done["attempts"] == 2


def test_a_job_canceled_while_running_shows_canceled_in_rq_not_finished(
    api: TestClient, settings: Settings, long_clip: Path, tmp_path: Path
) -> None:
    connection = api.app.state.redis  # type: ignore[attr-defined]
    with worker_process(settings, tmp_path) as worker:
        worker.child_pid()
        job_id = submit(api, long_clip)
        wait_running(api, job_id)
        assert api.post(f"/jobs/{job_id}/cancel").json()["status"] == "canceled"
        rq_job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
        seen: list[str] = []

        def run_ended() -> bool:
            seen.append(rq_job.get_status(refresh=True))
            return seen[-1] not in ("started", "queued")

        wait_for(run_ended, 30, "RQ to end the run", every=0.001)  # to catch a passing `finished`
        assert seen[-1] == "canceled" and "finished" not in seen
        queue = get_queue(settings, connection)
        assert job_id in queue.canceled_job_registry.get_job_ids()
        assert job_id not in queue.started_job_registry.get_job_ids()
        assert job_id not in queue.finished_job_registry.get_job_ids()
        # A stop right after the canceled run is obeyed at once (it was once swallowed, and the
        # worker sat in its next wait for a job until it was killed).
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(10) == 0


def test_a_worker_killed_by_sigkill_can_start_again_at_once_under_the_same_name(
    api: TestClient, settings: Settings, long_clip: Path, tmp_path: Path
) -> None:
    # RQ keeps a killed worker's registration for minutes and refuses a worker of the same
    # name meanwhile: a container restarted after an OOM kill would not have started.
    with worker_process(settings, tmp_path, name="same") as first:
        os.kill(first.child_pid(), signal.SIGKILL)
        first.process.wait(10)
    with worker_process(settings, tmp_path, name="same") as second:
        assert wait_final(api, submit(api, long_clip))["status"] == "succeeded"
        assert "taking over its name" in second.log_text()


def test_a_queued_record_no_queue_holds_is_enqueued_again(
    api: TestClient, settings: Settings, long_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.reconcile

    monkeypatch.setattr(shared.reconcile, "ENQUEUE_GRACE_SECONDS", 0.0)
    queue = get_queue(settings, api.app.state.redis)  # type: ignore[attr-defined]
    kept, lost_upload = submit(api, long_clip), submit(api, long_clip)
    queue.empty()  # "Empty queue" in the RQ dashboard
    storage: Storage = api.app.state.storage  # type: ignore[attr-defined]
    storage.purge_prefix(f"uploads/{lost_upload}/")
    report = api.app.state.reconciler.sweep()  # type: ignore[attr-defined]
    assert report.requeued == [kept]
    assert job(api, lost_upload)["error"]["code"] == "SOURCE_MISSING"
    with worker_process(settings, tmp_path):
        assert wait_final(api, kept)["status"] == "succeeded"


# --- 4. unfinished multipart uploads ------------------------------------------------------------


def test_delete_aborts_the_jobs_unfinished_uploads(api: TestClient, long_clip: Path) -> None:
    storage: Storage = api.app.state.storage  # type: ignore[attr-defined]
    job_id = submit(api, long_clip)
    writer = storage.multipart_writer(result_key(job_id, "annotated.mp4"), "video/mp4")
    writer.send_part(b"x" * 5 * 1024 * 1024)
    assert len(open_uploads(storage, results_prefix(job_id))) == 1
    assert api.delete(f"/jobs/{job_id}").status_code == 204
    assert open_uploads(storage, f"results/{job_id}/") == [] and open_uploads(storage, f"uploads/{job_id}/") == []
    assert storage.list_keys(f"uploads/{job_id}/") == []


def test_an_upload_cut_off_by_a_storage_outage_is_aborted_once_storage_is_back(
    settings: Settings, s3_server: S3Server
) -> None:
    with TcpProxy(int(s3_server.endpoint_url.rsplit(":", 1)[1])) as proxy:
        through_proxy = settings.model_copy(update={"s3_endpoint_url": proxy.url, "abandoned_upload_seconds": 1})
        app = create_app(through_proxy)
        direct = Storage(settings)
        part = settings.upload_part_bytes

        def body() -> Iterator[bytes]:
            yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n\r\n'
            yield b"\x00\x00\x00\x18ftypmp42" + b"\x00" * (2 * part)  # two parts reach storage...
            wait_for(lambda: direct.open_multipart_uploads("uploads/"), 30, "the upload to reach storage")
            time.sleep(1.0)
            proxy.cut()  # ...then storage goes away
            yield b"\x00" * part
            yield b"\r\n--B--\r\n"

        with live_api(through_proxy, app) as url:
            response = httpx.post(
                f"{url}/analyze",
                content=body(),
                headers={"content-type": "multipart/form-data; boundary=B"},
                timeout=60,
            )
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "STORAGE_UNAVAILABLE"
        assert len(direct.open_multipart_uploads("uploads/")) == 1  # the abort could not reach storage
        proxy.restore()
        time.sleep(1.1)  # abandoned_upload_seconds
        report = app.state.reconciler.sweep()
        assert report.uploads_aborted == 1
        assert direct.open_multipart_uploads("uploads/") == []
        assert app.state.storage.open_uploads.count() == 0
        assert direct.list_keys("uploads/") == []


def test_a_storage_outage_mid_job_is_waited_out_and_no_queued_job_fails(
    settings: Settings, s3_server: S3Server, long_clip: Path, tmp_path: Path
) -> None:
    with TcpProxy(int(s3_server.endpoint_url.rsplit(":", 1)[1])) as proxy:
        through_proxy = settings.model_copy(update={"s3_endpoint_url": proxy.url})
        with TestClient(create_app(through_proxy)) as api, worker_process(through_proxy, tmp_path) as worker:
            worker.child_pid()
            job_ids = [submit(api, long_clip) for _ in range(3)]
            wait_running(api, job_ids[0])
            proxy.cut()
            # Longer than a job's analysis: its upload, or the next job's fetch, meets the outage.
            wait_for(lambda: "storage unreachable" in worker.log_text(), 60, "the worker to meet the outage")
            time.sleep(2.0)
            proxy.restore()
            done = [wait_final(api, job_id) for job_id in job_ids]
            storage: Storage = api.app.state.storage  # type: ignore[attr-defined]
            assert [job["status"] for job in done] == ["succeeded"] * 3, [job.get("error") for job in done]
            for job_id in job_ids:
                assert len(stored(storage, job_id)) == 5 and open_uploads(storage, results_prefix(job_id)) == []
            assert "storage is back after an outage" in worker.log_text()
            assert all(job["attempts"] == 1 for job in done)  # waited out, not retried


# --- 8. retention -------------------------------------------------------------------------------


def test_retention_removes_old_finished_jobs_completely_and_keeps_the_rest(
    api: TestClient, settings: Settings, long_clip: Path
) -> None:
    store: JobStore = api.app.state.store  # type: ignore[attr-defined]
    storage: Storage = api.app.state.storage  # type: ignore[attr-defined]
    old_done, old_queued, new_done = (submit(api, long_clip) for _ in range(3))
    for job_id in (old_done, new_done):
        store.start(job_id, worker="w")
        storage.client.put_object(Bucket=storage.bucket, Key=result_key(job_id, "poses.json"), Body=b"{}")
        store.succeed(job_id, ["poses.json"], frames_done=1)
    long_ago = time.time() - settings.retention_days * 86400 - 60
    for job_id in (old_done, old_queued):
        store.update(job_id, created_at=long_ago)
        for status in JobStatus:  # re-score the indexes as if created then
            key = store.keys.jobs_in(status.value)
            if store.redis.zscore(key, job_id) is not None:
                store.redis.zadd(key, {job_id: long_ago})
    expired = api.app.state.reconciler.expire()  # type: ignore[attr-defined]
    assert expired == [old_done]
    assert api.get(f"/jobs/{old_done}").status_code == 404
    assert storage.list_keys(f"uploads/{old_done}/") == [] and storage.list_keys(results_prefix(old_done)) == []
    assert job(api, old_queued)["status"] == "queued"  # never removed before it ends
    assert job(api, new_done)["status"] == "succeeded" and stored(storage, new_done) == ["poses.json"]


def test_the_status_index_is_built_for_records_written_before_it(api: TestClient, long_clip: Path) -> None:
    store: JobStore = api.app.state.store  # type: ignore[attr-defined]
    ids = [submit(api, long_clip) for _ in range(3)]
    store.start(ids[0], worker="w")
    client: redis.Redis = store.redis
    keys = RedisKeys(store.keys.prefix)
    client.delete(keys.status_index_marker(), *(keys.jobs_in(s.value) for s in JobStatus))
    assert store.list(status=JobStatus.QUEUED) == ([], 0)  # as an older Redis would look
    assert store.ensure_status_index() == 3
    assert [r.job_id for r in store.list(status=JobStatus.QUEUED)[0]] == [ids[2], ids[1]]
    assert store.list(status=JobStatus.RUNNING)[1] == 1
    assert store.ensure_status_index() == 0  # once
