"""Fetch stage: the uploaded video, from object storage to the worker's scratch folder."""

from __future__ import annotations

from pathlib import Path

from botocore.exceptions import ClientError

from shared.errors import ErrorCode, ServiceError
from shared.storage import Storage, is_missing


def fetch(storage: Storage, source_key: str, work_dir: Path) -> Path:
    path = work_dir / Path(source_key).name
    try:
        storage.download_file(source_key, path)
    except ClientError as exc:
        if is_missing(exc):
            raise ServiceError(
                ErrorCode.SOURCE_MISSING, "The uploaded video is no longer in storage.", {"key": source_key}
            ) from exc
        raise
    return path
