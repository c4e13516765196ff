"""Per-key caps, so one client cannot fill the queue or the disk (429 RATE_LIMITED with Retry-After).

- Jobs waiting or running: at most `MAX_QUEUED_JOBS_PER_KEY` per key; checked before an
  upload is read. Two uploads racing past the check can each add one job, so the cap may
  be passed by at most the uploads-in-flight cap.
- Uploads being received at once: at most `MAX_UPLOADS_IN_FLIGHT_PER_KEY` per key. Each
  upload holds a claim in a Redis sorted set scored by when it lapses; the upload renews it
  while data arrives, and a claim of an API process that died lapses on its own within
  `CLAIM_SECONDS`, so a crash never locks a key out.

An open API (no keys) has no caps: it is for frontend work on a loopback-bound stack.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from starlette.concurrency import run_in_threadpool

from backend.auth import Caller
from shared.errors import ErrorCode, ServiceError
from shared.jobs import JobStatus, JobStore
from shared.settings import Settings

CLAIM_SECONDS = 120
RENEW_SECONDS = 30
# What a refused client is told to wait: an upload takes a while; a queued job even longer.
UPLOAD_RETRY_AFTER_SECONDS = 30
QUEUE_RETRY_AFTER_SECONDS = 60

# KEYS[1] the key's claims; ARGV[1] now, ARGV[2] lapse time of the new claim, ARGV[3] the cap,
# ARGV[4] the claim's id. Returns the number of claims held before, and whether it was added.
_CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[3]) then return {held, 0} end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) - tonumber(ARGV[1])) + 1)
return {held, 1}
"""


def rate_limited(limit: str, maximum: int, retry_after: int, message: str) -> ServiceError:
    return ServiceError(
        ErrorCode.RATE_LIMITED, message, {"limit": limit, "max": maximum, "retry_after_seconds": retry_after}
    )


class KeyLimits:
    def __init__(self, store: JobStore, settings: Settings) -> None:
        self.store = store
        self.redis: redis.Redis = store.redis
        self.settings = settings
        self._claim = self.redis.register_script(_CLAIM)

    def check_queue(self, caller: Caller) -> None:
        if not caller.key_id:
            return
        pipe = self.redis.pipeline(transaction=False)
        for status in (JobStatus.QUEUED, JobStatus.RUNNING):
            pipe.zcard(self.store.keys.owner_jobs_in(caller.key_id, status.value))
        unfinished = sum(int(n) for n in pipe.execute())
        cap = self.settings.max_queued_jobs_per_key
        if unfinished >= cap:
            raise rate_limited(
                "queued_jobs", cap, QUEUE_RETRY_AFTER_SECONDS,
                f"This key already has {unfinished} jobs waiting or running (at most {cap}); "
                "send more once some have finished.",
            )  # fmt: skip

    @asynccontextmanager
    async def upload_slot(self, caller: Caller) -> AsyncIterator[UploadClaim | None]:
        """Hold one of the key's upload slots while the body streams in (None: an open API, no cap)."""
        if not caller.key_id:
            yield None
            return
        claim = UploadClaim(self, caller.key_id)
        await run_in_threadpool(claim.take)
        try:
            yield claim
        finally:
            await run_in_threadpool(claim.release)


class UploadClaim:
    def __init__(self, limits: KeyLimits, key_id: str) -> None:
        self.limits = limits
        self.key = limits.store.keys.owner_uploads(key_id)
        self.id = uuid.uuid4().hex
        self.renewed = 0.0

    def take(self) -> None:
        moment = time.time()
        cap = self.limits.settings.max_uploads_in_flight_per_key
        _, added = self.limits._claim(keys=[self.key], args=[moment, moment + CLAIM_SECONDS, cap, self.id])
        if not int(added):
            raise rate_limited(
                "uploads_in_flight", cap, UPLOAD_RETRY_AFTER_SECONDS,
                f"This key is already sending {cap} uploads at once; send the next one when one has finished.",
            )  # fmt: skip
        self.renewed = moment

    def due(self) -> bool:
        return time.time() - self.renewed >= RENEW_SECONDS

    def renew(self) -> None:
        self.renewed = time.time()
        self.limits.redis.zadd(self.key, {self.id: self.renewed + CLAIM_SECONDS}, xx=True)

    def release(self) -> None:
        self.limits.redis.zrem(self.key, self.id)


async def renewing(body: AsyncIterator[bytes], claim: UploadClaim | None) -> AsyncIterator[bytes]:
    """The request body as it arrives, renewing the upload's claim every RENEW_SECONDS."""
    async for chunk in body:
        if claim is not None and claim.due():
            await run_in_threadpool(claim.renew)
        yield chunk
