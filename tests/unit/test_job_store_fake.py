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


def test_every_status_changing_transition_is_audited() -> None:
    from shared.jobs import AUDITED, TRANSITIONS

    assert set(AUDITED) == {name for name, t in TRANSITIONS.items() if t.target is not None}
