"""shared/storage.py against a real S3 server (SeaweedFS, signatures checked)."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from shared.errors import ErrorCode, ServiceError
from shared.settings import Settings
from shared.storage import MultipartWriter, Storage
from tests.services import free_port

pytestmark = pytest.mark.service

MIB = 1024 * 1024


@pytest.fixture
def storage(service_settings: Settings) -> Storage:
    return Storage(service_settings)


def write_in_chunks(writer: MultipartWriter, data: bytes, chunk: int = 256 * 1024) -> None:
    for start in range(0, len(data), chunk):
        writer.write(data[start : start + chunk])


def read(storage: Storage, key: str) -> bytes:
    return bytes(storage.open_stream(key)["Body"].read())


def pending_uploads(storage: Storage) -> list[dict]:
    return list(storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", []))


def test_multipart_write_then_complete_stores_the_exact_bytes(storage: Storage) -> None:
    data = os.urandom(storage.settings.upload_part_bytes * 2 + 12345)  # two full parts and a short last one
    writer = storage.multipart_writer("uploads/j1/source.mp4", "video/mp4")
    write_in_chunks(writer, data)
    writer.complete()
    assert writer.size == len(data)
    assert storage.exists("uploads/j1/source.mp4")
    head = storage.client.head_object(Bucket=storage.bucket, Key="uploads/j1/source.mp4")
    assert head["ContentLength"] == len(data)
    assert head["ContentType"] == "video/mp4"
    assert hashlib.sha256(read(storage, "uploads/j1/source.mp4")).digest() == hashlib.sha256(data).digest()
    assert pending_uploads(storage) == []


def test_a_small_write_completes_as_one_part(storage: Storage) -> None:
    writer = storage.multipart_writer("small.bin", "application/octet-stream")
    writer.write(b"hello ")
    writer.write(b"world")
    writer.complete()
    assert read(storage, "small.bin") == b"hello world"


def test_an_empty_write_completes_as_an_empty_object(storage: Storage) -> None:
    writer = storage.multipart_writer("empty.bin", "application/octet-stream")
    writer.complete()
    assert read(storage, "empty.bin") == b""


def test_abort_leaves_nothing_behind(storage: Storage) -> None:
    writer = storage.multipart_writer("uploads/j2/source.mp4", "video/mp4")
    write_in_chunks(writer, os.urandom(storage.settings.upload_part_bytes + MIB))  # one part already sent
    assert len(pending_uploads(storage)) == 1
    writer.abort()
    assert not storage.exists("uploads/j2/source.mp4")
    assert storage.list_keys("") == []
    assert pending_uploads(storage) == []
    writer.abort()  # twice is harmless


def test_abort_before_any_part_was_sent_is_harmless(storage: Storage) -> None:
    writer = storage.multipart_writer("never.bin", "application/octet-stream")
    writer.write(b"a little")
    writer.abort()
    assert storage.list_keys("") == []


def test_upload_and_download_file_round_trip(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "poses.json"
    source.write_bytes(b'{"tracks": []}')
    storage.upload_file(source, "results/j3/poses.json", "application/json")
    target = tmp_path / "back.json"
    storage.download_file("results/j3/poses.json", target)
    assert target.read_bytes() == source.read_bytes()


def test_open_stream_reads_a_byte_range(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "video.mp4"
    source.write_bytes(bytes(range(256)) * 4)
    storage.upload_file(source, "results/j4/annotated.mp4", "video/mp4")
    part = storage.open_stream("results/j4/annotated.mp4", byte_range="bytes=10-19")
    assert part["Body"].read() == bytes(range(10, 20))
    assert part["ContentRange"] == "bytes 10-19/1024"


def test_presigned_url_can_be_fetched_without_credentials(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "metrics.json"
    source.write_bytes(b'{"dancers": 2}')
    storage.upload_file(source, "results/j5/metrics.json", "application/json")
    assert storage.can_presign
    url = storage.presigned_url("results/j5/metrics.json", filename="j5-metrics.json")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b'{"dancers": 2}'
        assert response.headers["Content-Type"] == "application/json"
        assert 'filename="j5-metrics.json"' in response.headers["Content-Disposition"]


def test_a_tampered_presigned_url_is_refused(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_bytes(b"secret")
    storage.upload_file(source, "results/j6/a.txt", "text/plain")
    url = storage.presigned_url("results/j6/a.txt").replace("results/j6/a.txt", "results/j6/b.txt")
    with pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(url, timeout=10)
    assert failure.value.code == 403


def test_presigned_url_needs_a_public_endpoint(service_settings: Settings) -> None:
    storage = Storage(service_settings.model_copy(update={"s3_public_endpoint_url": ""}))
    assert not storage.can_presign
    with pytest.raises(RuntimeError):
        storage.presigned_url("results/x/poses.json")


def test_exists_and_delete(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "x"
    source.write_bytes(b"x")
    assert not storage.exists("results/j7/poses.csv")
    storage.upload_file(source, "results/j7/poses.csv", "text/csv")
    assert storage.exists("results/j7/poses.csv")
    storage.delete("results/j7/poses.csv")
    assert not storage.exists("results/j7/poses.csv")


def test_delete_prefix_removes_only_that_prefix(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "x"
    source.write_bytes(b"x")
    for key in ("uploads/a/source.mp4", "results/a/poses.json", "results/a/poses.csv", "results/ab/poses.json"):
        storage.upload_file(source, key, "application/octet-stream")
    assert storage.delete_prefix("results/a/") == 2
    assert sorted(storage.list_keys("")) == ["results/ab/poses.json", "uploads/a/source.mp4"]
    assert storage.delete_prefix("results/a/") == 0


def test_list_keys_pages_past_a_thousand(storage: Storage) -> None:
    # list_objects_v2 answers 1000 keys a page; list_keys and delete_prefix must follow the pages.
    for i in range(1005):
        storage.client.put_object(Bucket=storage.bucket, Key=f"many/{i:04d}", Body=b"")
    assert len(storage.list_keys("many/")) == 1005
    assert storage.delete_prefix("many/") == 1005
    assert storage.list_keys("many/") == []


def test_ping_and_ensure_bucket(storage: Storage) -> None:
    storage.ping()
    storage.ensure_bucket()  # already there: no error
    storage.ping()


def test_ensure_bucket_when_the_head_fails_but_the_bucket_is_ours(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`manage.sh local start` once failed here: SeaweedFS, still starting, failed the HEAD of a bucket
    it had, and the CREATE then said BucketAlreadyOwnedByYou. The real server answers the CREATE."""

    def starting(**_: object) -> None:
        raise ClientError({"Error": {"Code": "503", "Message": "starting"}}, "HeadBucket")

    monkeypatch.setattr(storage.client, "head_bucket", starting)
    storage.ensure_bucket()
    monkeypatch.undo()
    storage.ping()


def test_ping_fails_for_a_missing_bucket(service_settings: Settings) -> None:
    storage = Storage(service_settings.model_copy(update={"s3_bucket": "no-such-bucket-here"}))
    with pytest.raises(ServiceError) as failure:
        storage.ping()
    assert failure.value.code is ErrorCode.STORAGE_UNAVAILABLE


def test_an_unreachable_server_is_storage_unavailable(service_settings: Settings) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    storage = Storage(service_settings.model_copy(update={"s3_endpoint_url": dead}))
    with pytest.raises(ServiceError) as failure:
        storage.ping()
    assert failure.value.code is ErrorCode.STORAGE_UNAVAILABLE
    with pytest.raises(ServiceError) as failure:
        storage.exists("anything")
    assert failure.value.code is ErrorCode.STORAGE_UNAVAILABLE


def test_a_refusal_is_final_not_waited_for(service_settings: Settings) -> None:
    from shared.bucket import ensure_bucket

    bad = Storage(service_settings.model_copy(update={"s3_bucket": "Not_A_Valid_Bucket"}))
    attempts: list[int] = []
    real_ensure = bad.ensure_bucket

    def counted() -> None:
        attempts.append(1)
        real_ensure()

    bad.ensure_bucket = counted  # type: ignore[method-assign]
    with pytest.raises(ServiceError) as caught:
        ensure_bucket(bad, wait_seconds=30)
    assert caught.value.details["s3_code"] == "InvalidBucketName"
    assert len(attempts) == 1, "a refusal must not be retried"
