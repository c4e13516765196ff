"""The S3 multipart uploads in progress, kept in Redis so none is forgotten.

An unfinished multipart upload is invisible in a bucket listing yet holds all
its parts. Every writer aborts its own on failure, but an abort cannot reach
storage during an outage, and a killed process aborts nothing. So each upload
is listed here while it is open, scored by its last activity:

    {prefix}:open-uploads   sorted set   "upload_id key" -> last part sent (Unix time)

A finished or aborted upload leaves the set. One whose abort failed is scored
0, and the reconciler (shared/reconcile.py) aborts every entry idle for longer
than `abandoned_upload_seconds`, so the parts go as soon as storage answers.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import redis

from shared.keys import RedisKeys

log = logging.getLogger(__name__)


def _member(key: str, upload_id: str) -> str:
    # The upload id first: it has no spaces, the key may.
    return f"{upload_id} {key}"


class OpenUploads:
    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self.redis = client
        self.index = keys.open_uploads()

    def _score(self, key: str, upload_id: str, score: float) -> None:
        # Best effort: losing a Redis write must never break the upload itself;
        # the bucket's lifecycle rule is the last safety net.
        with contextlib.suppress(redis.RedisError):
            self.redis.zadd(self.index, {_member(key, upload_id): score})

    def active(self, key: str, upload_id: str) -> None:
        """The upload was opened or has just sent a part."""
        self._score(key, upload_id, time.time())

    def abort_failed(self, key: str, upload_id: str) -> None:
        """Its abort did not reach storage: abort it at the next sweep."""
        self._score(key, upload_id, 0)

    def closed(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(redis.RedisError):
            self.redis.zrem(self.index, _member(key, upload_id))

    def idle(self, seconds: float, limit: int = 100) -> list[tuple[str, str]]:
        """(key, upload id) of uploads with no activity for `seconds`, longest idle first."""
        raw: Any = self.redis.zrangebyscore(self.index, "-inf", time.time() - seconds, 0, limit)
        out = []
        for member in raw:
            text = member.decode() if isinstance(member, bytes) else member
            upload_id, _, key = text.partition(" ")
            out.append((key, upload_id))
        return out

    def count(self) -> int:
        return int(self.redis.zcard(self.index))
