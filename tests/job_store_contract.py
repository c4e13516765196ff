"""What `shared.jobs.JobStore` promises, written once and run against two backends.

tests/unit/test_job_store_fake.py runs it on fakeredis (fast, Lua through lupa);
tests/service/test_job_store.py runs it on a real redis-server. Each provides a
`store` fixture (and `other_store`: same Redis, another key prefix).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from shared.errors import ErrorCode, ServiceError
from shared.jobs import JobRecord, JobStage, JobStatus, JobStore


def make_record(job_id: str, created_at: float, status: JobStatus = JobStatus.QUEUED) -> JobRecord:
    return JobRecord(job_id=job_id, status=status, created_at=created_at, filename=f"{job_id}.mp4", size_bytes=1234)


def fill(store: JobStore, statuses: list[JobStatus]) -> list[str]:
    """Jobs created one second apart in the given order; returns their ids, oldest first."""
    base = 1_700_000_000.0
    ids = []
    for i, status in enumerate(statuses):
        job_id = f"job-{i:02d}"
        store.create(make_record(job_id, base + i, status))
        ids.append(job_id)
    return ids


class JobStoreContract:
    def test_create_then_get_returns_the_same_record(self, store: JobStore) -> None:
        record = JobRecord(
            job_id="abc",
            status=JobStatus.RUNNING,
            stage=JobStage.ANALYZING,
            progress=0.25,
            frames_done=30,
            frames_total=120,
            created_at=1_700_000_000.123456,
            started_at=1_700_000_001.5,
            heartbeat_at=None,
            error=None,
            results=["poses.json"],
            profile="accurate",
            mode="real",
            source_key="uploads/abc/source.mp4",
            filename="dance, take 2.mp4",
            size_bytes=10_000_000,
            video={"width": 1920, "height": 1080, "fps": 29.97, "rotation": 90},
        )
        store.create(record)
        assert store.get("abc") == record

    def test_get_of_an_unknown_job_is_none(self, store: JobStore) -> None:
        assert store.get("nope") is None

    def test_update_sets_fields_and_encodes_them_like_create(self, store: JobStore) -> None:
        store.create(make_record("a", time.time()))
        error = {"code": "INVALID_VIDEO", "message": "bad", "details": {"reason": "no video stream"}}
        assert store.update("a", status=JobStatus.FAILED, stage=JobStage.PROBING, error=error, finished_at=12.5)
        got = store.get("a")
        assert got is not None
        assert (got.status, got.stage, got.error, got.finished_at) == (JobStatus.FAILED, JobStage.PROBING, error, 12.5)
        assert got.filename == "a.mp4"  # untouched fields stay

    def test_update_only_if_applies_in_an_allowed_status(self, store: JobStore) -> None:
        store.create(make_record("a", time.time()))
        assert store.update("a", only_if=(JobStatus.QUEUED, JobStatus.RUNNING), status=JobStatus.RUNNING)
        assert store.update("a", only_if=(JobStatus.RUNNING,), progress=0.5, frames_done=10)
        got = store.get("a")
        assert got is not None and (got.status, got.progress, got.frames_done) == (JobStatus.RUNNING, 0.5, 10)

    def test_update_only_if_refuses_in_another_status_and_changes_nothing(self, store: JobStore) -> None:
        store.create(make_record("a", time.time(), JobStatus.SUCCEEDED))
        before = store.get("a")
        assert not store.update("a", only_if=(JobStatus.QUEUED, JobStatus.RUNNING), status=JobStatus.CANCELED)
        assert store.get("a") == before

    def test_a_cancel_is_never_overwritten_by_a_late_progress_update(self, store: JobStore) -> None:
        store.create(make_record("a", time.time(), JobStatus.RUNNING))
        assert store.update("a", only_if=(JobStatus.QUEUED, JobStatus.RUNNING), status=JobStatus.CANCELED)
        assert not store.update("a", only_if=(JobStatus.RUNNING,), progress=0.9, stage=JobStage.RENDERING)
        got = store.get("a")
        assert got is not None and (got.status, got.progress, got.stage) == (JobStatus.CANCELED, 0.0, JobStage.QUEUED)

    def test_status_names_match_whole_words_only(self, store: JobStore) -> None:
        # "running" must not match an allowed list holding only a status that contains it, and vice versa.
        store.create(make_record("a", time.time(), JobStatus.RUNNING))
        assert not store.update("a", only_if=(JobStatus.QUEUED,), progress=0.1)
        assert store.update("a", only_if=(JobStatus.CANCELED, JobStatus.RUNNING), progress=0.1)

    def test_update_of_a_missing_job_is_refused_and_creates_nothing(self, store: JobStore) -> None:
        assert not store.update("ghost", progress=0.5)
        assert not store.update("ghost", only_if=(JobStatus.RUNNING,), progress=0.5)
        assert store.get("ghost") is None
        assert store.list() == ([], 0)

    def test_update_of_an_unknown_field_is_an_error(self, store: JobStore) -> None:
        store.create(make_record("a", time.time()))
        with pytest.raises(KeyError):
            store.update("a", colour="red")

    def test_each_applied_update_is_published_on_the_jobs_channel(self, store: JobStore) -> None:
        store.create(make_record("a", time.time()))
        pubsub = store.redis.pubsub()
        pubsub.subscribe(store.keys.job_events("a"))
        try:
            assert pubsub.get_message(timeout=1)["type"] == "subscribe"
            store.update("a", status=JobStatus.RUNNING)
            store.update("a", only_if=(JobStatus.QUEUED,), progress=0.5)  # refused: nothing published
            store.update("a", progress=0.7)
            messages: list[Any] = []
            deadline = time.monotonic() + 2
            while len(messages) < 2 and time.monotonic() < deadline:
                message = pubsub.get_message(timeout=0.2)
                if message and message["type"] == "message":
                    messages.append(message["data"])
            assert [m.decode() if isinstance(m, bytes) else m for m in messages] == ["running", "running"]
            assert pubsub.get_message(timeout=0.2) is None
        finally:
            pubsub.close()

    def test_every_visible_change_is_a_new_version_and_a_heartbeat_alone_is_not(self, store: JobStore) -> None:
        store.create(make_record("a", time.time()))
        assert store.get("a").version == 1  # type: ignore[union-attr]
        assert store.start("a", "w1")
        assert store.get("a").version == 2  # type: ignore[union-attr]
        assert store.report("a", heartbeat_at=time.time())
        assert store.get("a").version == 2, "a heartbeat shows nothing new"  # type: ignore[union-attr]
        assert store.report("a", heartbeat_at=time.time(), progress=0.5)
        assert store.get("a").version == 3  # type: ignore[union-attr]
        assert not store.update("a", only_if=(JobStatus.QUEUED,), progress=0.9)  # refused: no new version
        assert store.get("a").version == 3  # type: ignore[union-attr]

    def test_a_heartbeat_is_not_published_and_a_delete_is(self, store: JobStore) -> None:
        store.create(make_record("a", time.time()))
        store.start("a", "w1")
        pubsub = store.redis.pubsub()
        pubsub.subscribe(store.keys.job_events("a"))
        try:
            assert pubsub.get_message(timeout=1)["type"] == "subscribe"
            store.report("a", heartbeat_at=time.time())
            store.delete("a")
            messages: list[Any] = []
            deadline = time.monotonic() + 2
            while not messages and time.monotonic() < deadline:
                message = pubsub.get_message(timeout=0.2)
                if message and message["type"] == "message":
                    messages.append(message["data"])
            assert [m.decode() if isinstance(m, bytes) else m for m in messages] == ["deleted"]
        finally:
            pubsub.close()

    def test_list_is_newest_first_and_paginates(self, store: JobStore) -> None:
        ids = fill(store, [JobStatus.QUEUED] * 5)
        page, total = store.list(limit=2)
        assert total == 5 and [r.job_id for r in page] == [ids[4], ids[3]]
        page, total = store.list(offset=2, limit=2)
        assert total == 5 and [r.job_id for r in page] == [ids[2], ids[1]]
        page, total = store.list(offset=4, limit=2)
        assert total == 5 and [r.job_id for r in page] == [ids[0]]
        assert store.list(offset=10, limit=2) == ([], 5)

    def test_list_filters_by_status_with_its_own_total_and_pages(self, store: JobStore) -> None:
        statuses = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.SUCCEEDED, JobStatus.RUNNING, JobStatus.SUCCEEDED]
        ids = fill(store, statuses)
        page, total = store.list(status=JobStatus.SUCCEEDED, limit=2)
        assert total == 3 and [r.job_id for r in page] == [ids[4], ids[2]]
        page, total = store.list(status=JobStatus.SUCCEEDED, offset=2, limit=2)
        assert total == 3 and [r.job_id for r in page] == [ids[0]]
        page, total = store.list(status=JobStatus.FAILED)
        assert total == 1 and [r.status for r in page] == [JobStatus.FAILED]
        assert store.list(status=JobStatus.CANCELED) == ([], 0)

    def test_list_follows_status_changes(self, store: JobStore) -> None:
        ids = fill(store, [JobStatus.QUEUED, JobStatus.QUEUED])
        store.update(ids[0], status=JobStatus.RUNNING)
        assert [r.job_id for r in store.list(status=JobStatus.RUNNING)[0]] == [ids[0]]
        assert [r.job_id for r in store.list(status=JobStatus.QUEUED)[0]] == [ids[1]]

    def test_delete_removes_the_record_and_its_index_entry(self, store: JobStore) -> None:
        ids = fill(store, [JobStatus.SUCCEEDED] * 3)
        store.delete(ids[1])
        assert store.get(ids[1]) is None
        page, total = store.list()
        assert total == 2 and [r.job_id for r in page] == [ids[2], ids[0]]
        assert store.list(status=JobStatus.SUCCEEDED)[1] == 2
        assert not store.update(ids[1], progress=1.0)
        store.delete("never-existed")  # no error

    def test_key_prefixes_keep_stores_apart(self, store: JobStore, other_store: JobStore) -> None:
        store.create(make_record("same-id", 1.0))
        assert other_store.get("same-id") is None
        assert other_store.list() == ([], 0)
        assert not other_store.update("same-id", progress=0.5)

    # --- the state machine ------------------------------------------------------------------
    def test_start_counts_the_attempt_and_names_the_worker(self, store: JobStore) -> None:
        store.create(make_record("a", time.time()))
        assert store.start("a", worker="w1")
        got = store.get("a")
        assert got is not None and (got.status, got.attempts, got.worker) == (JobStatus.RUNNING, 1, "w1")
        assert not store.start("a", worker="w2")  # only a queued job starts
        assert store.get("a").attempts == 1  # type: ignore[union-attr]

    def test_retry_puts_a_running_job_back_in_the_queue_clean(self, store: JobStore) -> None:
        store.create(make_record("a", time.time()))
        store.start("a", worker="w1")
        store.report("a", progress=0.4, frames_done=40, stage=JobStage.RENDERING)
        assert not store.retry("a", "lost", worker="someone-else")  # another loss, already handled
        assert store.retry("a", "the worker stopped", worker="w1")
        got = store.get("a")
        assert got is not None
        assert (got.status, got.stage, got.progress, got.frames_done, got.worker) == (
            JobStatus.QUEUED, JobStage.QUEUED, 0.0, 0, "")  # fmt: skip
        assert (got.attempts, got.retry_reason) == (1, "the worker stopped")
        assert store.start("a", worker="w2") and store.get("a").attempts == 2  # type: ignore[union-attr]

    def test_transitions_refuse_what_the_state_machine_does_not_allow(self, store: JobStore) -> None:
        store.create(make_record("a", time.time()))
        assert not store.retry("a", "x")  # queued: nothing to retry
        assert not store.succeed("a", [], frames_done=0)  # never started
        assert not store.report("a", progress=0.5)
        with pytest.raises(ValueError):
            store.report("a", status=JobStatus.SUCCEEDED)
        assert store.cancel("a")
        for attempt in (store.cancel("a"), store.start("a", "w"), store.fail("a", _error())):
            assert not attempt  # final stays final
        assert store.get("a").status is JobStatus.CANCELED  # type: ignore[union-attr]

    def test_the_status_index_follows_every_transition(self, store: JobStore) -> None:
        ids = fill(store, [JobStatus.QUEUED] * 3)
        store.start(ids[0], "w")
        store.start(ids[1], "w")
        store.succeed(ids[1], ["poses.json"], frames_done=3)
        store.cancel(ids[2])
        counts = {s: store.count(s) for s in JobStatus}
        assert counts == {JobStatus.QUEUED: 0, JobStatus.RUNNING: 1, JobStatus.SUCCEEDED: 1,
                          JobStatus.FAILED: 0, JobStatus.CANCELED: 1}  # fmt: skip
        store.retry(ids[0], "lost")
        assert store.ids(JobStatus.QUEUED) == [ids[0]] and store.count(JobStatus.RUNNING) == 0
        store.delete(ids[1])
        assert store.count(JobStatus.SUCCEEDED) == 0


def _error() -> ServiceError:
    return ServiceError(ErrorCode.INTERNAL_ERROR, "x")
