"""Object storage (any S3 API: MinIO in production, SeaweedFS locally).

Every call that fails because the server cannot be reached raises
`ServiceError(STORAGE_UNAVAILABLE)`, so callers deal with one condition.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from shared.errors import ErrorCode, ServiceError
from shared.open_uploads import OpenUploads
from shared.settings import Settings

_PRESIGN_CACHE_SIZE = 4096
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket", "NoSuchUpload"}


def _unavailable(exc: Exception) -> ServiceError:
    return ServiceError(ErrorCode.STORAGE_UNAVAILABLE, "Object storage is unavailable.", {"reason": str(exc)})


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code"))


def is_missing(exc: ClientError) -> bool:
    return _error_code(exc) in _MISSING


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Turn transport failures into STORAGE_UNAVAILABLE; leave 'not found' to the caller."""
    try:
        yield
    except ClientError as exc:
        if is_missing(exc):
            raise
        error = _unavailable(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if 400 <= status < 500:
            # The server answered and refused (credentials, bucket name...): retrying will not help.
            error.details["s3_code"] = str(exc.response.get("Error", {}).get("Code"))
            error.message = f"Object storage refused the request ({error.details['s3_code']})."
        raise error from exc
    except (BotoCoreError, EndpointConnectionError, OSError) as exc:
        raise _unavailable(exc) from exc


def _client(
    settings: Settings, endpoint: str, *, connect_timeout: float = 3, read_timeout: float = 60, retries: int = 2
) -> BaseClient:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key,
        region_name=settings.s3_region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": retries, "mode": "standard"},
        ),
    )


class MultipartWriter:
    """Writes one object as an S3 multipart upload, a part at a time.

    Memory holds at most one part. `abort()` removes every part already sent,
    so a rejected or broken upload leaves nothing behind; with `open_uploads`,
    an upload whose abort cannot reach storage (or whose process dies) stays
    listed until the reconciler aborts it.
    """

    def __init__(
        self,
        client: BaseClient,
        bucket: str,
        key: str,
        part_size: int,
        content_type: str,
        open_uploads: OpenUploads | None = None,
    ) -> None:
        self._client = client
        self._open_uploads = open_uploads
        self.bucket = bucket
        self.key = key
        self.part_size = part_size
        self.content_type = content_type
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self.size = 0

    def _start(self) -> str:
        if self._upload_id is None:
            with storage_errors():
                response = self._client.create_multipart_upload(
                    Bucket=self.bucket, Key=self.key, ContentType=self.content_type
                )
            self._upload_id = str(response["UploadId"])
            self._track("active")
        return self._upload_id

    def _track(self, event: str) -> None:
        if self._open_uploads is not None and self._upload_id is not None:
            getattr(self._open_uploads, event)(self.key, self._upload_id)

    def feed(self, data: bytes) -> list[bytes]:
        """Buffer `data`; return the full parts now ready for `send_part` (no I/O here)."""
        self._buffer += data
        self.size += len(data)
        ready = []
        while len(self._buffer) >= self.part_size:
            ready.append(bytes(self._buffer[: self.part_size]))
            del self._buffer[: self.part_size]
        return ready

    def send_part(self, chunk: bytes) -> None:
        upload_id = self._start()
        number = len(self._parts) + 1
        with storage_errors():
            response = self._client.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=upload_id, PartNumber=number, Body=chunk
            )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self._track("active")

    def write(self, data: bytes) -> None:
        for chunk in self.feed(data):
            self.send_part(chunk)

    def complete(self) -> None:
        if self._buffer or not self._parts:
            self.send_part(bytes(self._buffer))
            self._buffer.clear()
        with storage_errors():
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._start(),
                MultipartUpload={"Parts": self._parts},
            )
        self._track("closed")

    def abort(self) -> None:
        self._buffer.clear()
        if self._upload_id is None:
            return
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            self._track("closed")
        except ClientError as exc:
            self._track("closed" if is_missing(exc) else "abort_failed")
        except (BotoCoreError, OSError):
            # Storage is down: the reconciler aborts it once storage answers again.
            self._track("abort_failed")
        self._upload_id = None


class Storage:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.client = _client(settings, settings.s3_endpoint_url)
        # Presigned URLs carry the host in their signature: sign for the host clients use.
        public = settings.s3_public_endpoint_url
        self._public_client = _client(settings, public) if public else None
        # Signing costs ~0.4 ms a URL and clients poll: reuse a URL for half its lifetime.
        self._presigned: dict[tuple[str, str | None], tuple[float, str]] = {}
        # Set by the API and the worker, which have Redis: multipart uploads are then tracked.
        self.open_uploads: OpenUploads | None = None
        self._probe: BaseClient | None = None

    # --- health and set-up ---------------------------------------------------
    def ping(self) -> None:
        """Raise STORAGE_UNAVAILABLE unless the bucket answers (within ~2 s: health checks and
        a worker waiting out an outage call this often, and must not hang on a stuck server)."""
        if self._probe is None:
            self._probe = _client(
                self.settings, self.settings.s3_endpoint_url, connect_timeout=1, read_timeout=2, retries=1
            )
        try:
            with storage_errors():
                self._probe.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            raise _unavailable(exc) from exc

    def ensure_bucket(self) -> None:
        with storage_errors():
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError:
                try:
                    self.client.create_bucket(Bucket=self.bucket)
                except ClientError as exc:
                    # A server that is still starting can fail the HEAD (or the answer to an
                    # earlier CREATE) and then report the bucket as ours: that is success.
                    if _error_code(exc) != "BucketAlreadyOwnedByYou":
                        raise

    # --- writing ---------------------------------------------------------------
    def multipart_writer(self, key: str, content_type: str) -> MultipartWriter:
        return MultipartWriter(
            self.client, self.bucket, key, self.settings.upload_part_bytes, content_type, self.open_uploads
        )

    def upload_file(self, path: Path, key: str, content_type: str) -> None:
        """One PUT for a small file; a tracked multipart upload, aborted on any failure, for a big one."""
        part = self.settings.upload_part_bytes
        if path.stat().st_size <= part:
            with storage_errors():
                self.client.put_object(Bucket=self.bucket, Key=key, Body=path.read_bytes(), ContentType=content_type)
            return
        writer = self.multipart_writer(key, content_type)
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(part):
                    writer.write(chunk)
            writer.complete()
        except BaseException:
            writer.abort()
            raise

    # --- reading -----------------------------------------------------------------
    def download_file(self, key: str, path: Path) -> None:
        with storage_errors():
            self.client.download_file(self.bucket, key, str(path))

    def exists(self, key: str) -> bool:
        with storage_errors():
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if is_missing(exc):
                    return False
                raise
        return True

    def open_stream(self, key: str, byte_range: str | None = None) -> dict[str, Any]:
        """The raw GetObject response (Body, ContentLength, ContentRange...) for streaming to a client.

        A range that selects no byte of the object raises RANGE_NOT_SATISFIABLE with its
        `size` in its details (a client's mistake, not storage being unavailable)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if byte_range:
            kwargs["Range"] = byte_range
        with storage_errors():
            try:
                return dict(self.client.get_object(**kwargs))
            except ClientError as exc:
                if _error_code(exc) != "InvalidRange":
                    raise
            # S3's error does not reliably carry the size (AWS sends it, SeaweedFS does not).
            size = int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        raise ServiceError(
            ErrorCode.RANGE_NOT_SATISFIABLE,
            f"The range {byte_range!r} does not overlap the file ({size} bytes).",
            {"range": byte_range, "size": size},
        )

    def presigned_url(self, key: str, filename: str | None = None) -> str:
        if self._public_client is None:
            raise RuntimeError("no public storage endpoint is configured")
        cached = self._presigned.get((key, filename))
        moment = time.monotonic()
        if cached is not None and cached[0] > moment:
            return cached[1]
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = f'inline; filename="{filename}"'
        expiry = self.settings.presign_expiry_seconds
        url = str(self._public_client.generate_presigned_url("get_object", Params=params, ExpiresIn=expiry))
        if len(self._presigned) >= _PRESIGN_CACHE_SIZE:
            self._presigned.clear()
        self._presigned[(key, filename)] = (moment + expiry / 2, url)
        return url

    @property
    def can_presign(self) -> bool:
        return self._public_client is not None

    # --- deleting ----------------------------------------------------------------
    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        with storage_errors():
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys += [item["Key"] for item in page.get("Contents", [])]
        return keys

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_keys(prefix)
        with storage_errors():
            for start in range(0, len(keys), 1000):
                batch = [{"Key": key} for key in keys[start : start + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)

    def open_multipart_uploads(self, prefix: str) -> list[tuple[str, str]]:
        """(key, upload id) of every unfinished multipart upload under `prefix`."""
        found: list[tuple[str, str]] = []
        with storage_errors():
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                found += [(item["Key"], item["UploadId"]) for item in page.get("Uploads", [])]
        return found

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Abort one multipart upload; one that no longer exists counts as aborted."""
        with storage_errors():
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except ClientError as exc:
                if not is_missing(exc):
                    raise
        if self.open_uploads is not None:
            self.open_uploads.closed(key, upload_id)

    def purge_prefix(self, prefix: str) -> int:
        """Every object and every unfinished upload under `prefix`; returns the objects deleted."""
        for key, upload_id in self.open_multipart_uploads(prefix):
            self.abort_multipart(key, upload_id)
        return self.delete_prefix(prefix)

    def delete(self, key: str) -> None:
        with storage_errors():
            self.client.delete_object(Bucket=self.bucket, Key=key)
