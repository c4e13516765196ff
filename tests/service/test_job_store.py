"""JobStore against a real redis-server: the same contract as the fakeredis tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from shared.jobs import JobStatus, JobStore
from shared.keys import RedisKeys
from shared.settings import Settings
from tests.job_store_contract import JobStoreContract, make_record

pytestmark = pytest.mark.service


@pytest.fixture
def client(service_settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(service_settings.redis_url)
    yield client
    client.close()


@pytest.fixture
def store(client: redis.Redis, service_settings: Settings) -> JobStore:
    return JobStore(client, RedisKeys(service_settings.key_prefix))


@pytest.fixture
def other_store(client: redis.Redis, service_settings: Settings) -> JobStore:
    return JobStore(client, RedisKeys(service_settings.key_prefix + "-other"))


class TestJobStoreOnRedis(JobStoreContract):
    pass


def test_update_is_atomic_under_concurrent_writers(store: JobStore) -> None:
    """Threads race progress updates against a cancel: after the cancel, the record never changes."""
    store.create(make_record("race", 1.0, JobStatus.RUNNING))
    start = threading.Barrier(5)

    def progress(worker: int) -> None:
        start.wait()
        for i in range(300):
            store.update("race", only_if=(JobStatus.RUNNING,), frames_done=worker * 1000 + i)

    threads = [threading.Thread(target=progress, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    start.wait()
    time.sleep(0.05)  # let the writers get going
    assert store.update("race", only_if=(JobStatus.RUNNING,), status=JobStatus.CANCELED)
    at_cancel = store.get("race")
    for thread in threads:
        thread.join()
    assert at_cancel is not None and at_cancel.status is JobStatus.CANCELED
    assert store.get("race") == at_cancel
