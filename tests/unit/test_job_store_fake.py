"""JobStore on fakeredis: the whole contract in milliseconds (Lua runs through lupa)."""

from __future__ import annotations

import fakeredis
import pytest

from shared.jobs import JobStore
from shared.keys import RedisKeys
from tests.job_store_contract import JobStoreContract


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


@pytest.fixture
def store(fake_redis: fakeredis.FakeRedis) -> JobStore:
    return JobStore(fake_redis, RedisKeys("test"))


@pytest.fixture
def other_store(fake_redis: fakeredis.FakeRedis) -> JobStore:
    return JobStore(fake_redis, RedisKeys("other"))


class TestJobStoreOnFakeRedis(JobStoreContract):
    pass
