"""Session-wide real services for the tests that need them (marked `service`).

`redis_server` and `s3_server` start a real redis-server and a real SeaweedFS
(S3 with signature checks) once per session, on free ports in a temp dir;
`service_settings` points a `Settings` at both, with a key prefix, queue and
bucket of its own for each test, so tests never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.settings import Settings
from shared.storage import Storage
from tests.services import RedisServer, S3Server, ServiceStartError, launch_redis, launch_seaweedfs

SERVICE_FIXTURES = {"redis_server", "s3_server", "service_settings"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Whatever uses a real service is a service test, marked or not: `-m "not service"` skips it.
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.service)


def settings_for(s3: S3Server, **overrides: Any) -> Settings:
    """Settings pointed at `s3` (public endpoint too, so results can be presigned).

    The API runs open (no keys), as `manage.sh local` may, for the tests of everything but
    who may call it; tests/service/test_auth.py runs those rules with keys, and
    `tests.auth.keyed` turns any of these settings into ones that need keys."""
    values: dict[str, Any] = {
        "api_auth": "open",
        # TestClient's requests say `Host: testserver`.
        "allowed_hosts": "127.0.0.1,localhost,testserver",
        "s3_endpoint_url": s3.endpoint_url,
        "s3_public_endpoint_url": s3.endpoint_url,
        "s3_access_key": s3.access_key,
        "s3_secret_key": s3.secret_key,
        "s3_region": s3.region,
        "s3_bucket": s3.bucket,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    try:
        server = launch_redis(tmp_path_factory.mktemp("redis"))
    except ServiceStartError as exc:
        pytest.fail(f"could not start redis-server: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS with one bucket, `s3_server.bucket`, already created."""
    try:
        server = launch_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    except ServiceStartError as exc:
        pytest.fail(f"could not start SeaweedFS: {exc}", pytrace=False)
    server.bucket = "session-bucket"
    Storage(settings_for(server)).ensure_bucket()
    yield server
    server.stop()


@pytest.fixture
def service_settings(redis_server: RedisServer, s3_server: S3Server, tmp_path: Path) -> Iterator[Settings]:
    """Settings for both servers, with this test's own Redis key prefix, queue and bucket."""
    unique = uuid.uuid4().hex[:12]
    settings = settings_for(
        s3_server,
        redis_url=redis_server.url,
        key_prefix=f"test-{unique}",
        queue_name=f"test-{unique}",
        s3_bucket=f"test-{unique}",
        work_dir=str(tmp_path),
        upload_part_mb=5,  # S3's smallest part: multipart tests need little data
    )
    storage = Storage(settings)
    storage.ensure_bucket()
    yield settings
    # Leave nothing behind: the bucket and everything in it.
    try:
        storage.delete_prefix("")
        storage.client.delete_bucket(Bucket=settings.s3_bucket)
    except Exception as exc:  # a failed clean-up must not hide the test's own result
        print(f"could not remove test bucket {settings.s3_bucket}: {exc}")
