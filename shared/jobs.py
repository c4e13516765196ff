"""The job record: what a client sees when it polls, kept in one Redis hash.

The API creates it, the worker moves it forward, and both go through
`JobStore`, whose transitions are atomic (a Lua compare-and-set), so a cancel
racing a worker can never be overwritten by a late progress update.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import redis
import redis.asyncio

from shared.errors import ErrorCode, ServiceError
from shared.keys import RedisKeys
from shared.profiles import Profile


class JobStatus(str, Enum):
    """Where a job is in its life; the last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})


class JobStage(str, Enum):
    """What a running job is doing right now."""

    QUEUED = "queued"
    FETCHING = "fetching"
    PROBING = "probing"
    ANALYZING = "analyzing"
    RENDERING = "rendering"
    EXPORTING = "exporting"
    UPLOADING = "uploading"
    DONE = "done"


def now() -> float:
    return time.time()


@dataclass
class JobRecord:
    job_id: str
    status: JobStatus = JobStatus.QUEUED
    stage: JobStage = JobStage.QUEUED
    progress: float = 0.0
    frames_done: int = 0
    frames_total: int = 0
    created_at: float = field(default_factory=now)
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    error: dict[str, Any] | None = None
    results: list[str] = field(default_factory=list)
    profile: Profile = Profile.FAST
    mode: str = "mock"
    source_key: str = ""
    filename: str = ""
    size_bytes: int = 0
    video: dict[str, Any] | None = None

    # Fields stored as JSON text in the hash.
    _JSON_FIELDS = ("error", "results", "video")
    _FLOAT_FIELDS = ("progress", "created_at", "started_at", "finished_at", "heartbeat_at")
    _INT_FIELDS = ("frames_done", "frames_total", "size_bytes")

    def silent_seconds(self) -> float:
        """Seconds since the last sign of life from the job's worker (or since it was created)."""
        return now() - (self.heartbeat_at or self.started_at or self.created_at)

    def is_stale(self, heartbeat_timeout: float) -> bool:
        """Running, but its worker has been silent longer than `heartbeat_timeout` seconds."""
        return self.status is JobStatus.RUNNING and self.silent_seconds() >= heartbeat_timeout

    def to_redis(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.__dict__.items():
            if name in self._JSON_FIELDS:
                out[name] = json.dumps(value)
            elif isinstance(value, Enum):
                out[name] = value.value
            elif value is None:
                out[name] = ""
            else:
                out[name] = str(value)
        return out

    @classmethod
    def from_redis(cls, raw: dict[str, str]) -> JobRecord:
        values: dict[str, Any] = {}
        for name, text in raw.items():
            if name not in cls.__dataclass_fields__:
                continue
            if name in cls._JSON_FIELDS:
                values[name] = json.loads(text) if text else None
            elif name in cls._FLOAT_FIELDS:
                values[name] = float(text) if text else None
            elif name in cls._INT_FIELDS:
                values[name] = int(text or 0)
            else:
                values[name] = text
        values["status"] = JobStatus(values.get("status", "queued"))
        values["stage"] = JobStage(values.get("stage", "queued"))
        values["profile"] = Profile(values.get("profile") or Profile.FAST.value)
        values["progress"] = values.get("progress") or 0.0
        values["results"] = values.get("results") or []
        return cls(**values)


def encode_fields(fields: dict[str, Any]) -> dict[str, str]:
    """Encode a partial update the way `JobRecord.to_redis` encodes a whole record."""
    out: dict[str, str] = {}
    for name, value in fields.items():
        if name not in JobRecord.__dataclass_fields__:
            raise KeyError(f"unknown job field {name!r}")
        if name in JobRecord._JSON_FIELDS:
            out[name] = json.dumps(value)
        elif isinstance(value, Enum):
            out[name] = value.value
        elif value is None:
            out[name] = ""
        else:
            out[name] = str(value)
    return out


# KEYS[1] job hash, KEYS[2] events channel; ARGV[1] allowed statuses ("," separated,
# empty: any), then field/value pairs. Returns 1 when applied, 0 when the job is in
# another status, -1 when the job does not exist.
_UPDATE_IF_STATUS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local allowed = ARGV[1]
if allowed ~= '' then
  local status = redis.call('HGET', KEYS[1], 'status')
  if not string.find(',' .. allowed .. ',', ',' .. status .. ',', 1, true) then return 0 end
end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PUBLISH', KEYS[2], redis.call('HGET', KEYS[1], 'status'))
return 1
"""


class JobStore:
    """Reads and writes job records; the only code that touches their Redis keys."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self.redis = client
        self.keys = keys
        self._update_if_status = client.register_script(_UPDATE_IF_STATUS)

    def create(self, record: JobRecord) -> None:
        pipe = self.redis.pipeline(transaction=True)
        fields: dict[Any, Any] = record.to_redis()  # redis-py's Mapping type is invariant in its keys
        pipe.hset(self.keys.job(record.job_id), mapping=fields)
        pipe.zadd(self.keys.job_index(), {record.job_id: record.created_at})
        pipe.execute()

    def get(self, job_id: str) -> JobRecord | None:
        return _record(self.redis.hgetall(self.keys.job(job_id)))

    def update(self, job_id: str, *, only_if: tuple[JobStatus, ...] = (), **fields: Any) -> bool:
        """Set fields atomically, only while the job is in one of `only_if` (any status when empty).

        Returns False when the job is in another status or does not exist.
        """
        args: list[str] = [",".join(status.value for status in only_if)]
        for name, value in encode_fields(fields).items():
            args += [name, value]
        applied = self._update_if_status(keys=[self.keys.job(job_id), self.keys.job_events(job_id)], args=args)
        return int(applied) == 1

    def fail_if_stale(self, record: JobRecord, heartbeat_timeout: float) -> JobRecord:
        """A running job whose worker has been silent too long died with it: fail it.

        Called by readers (the API) and by workers at start, so no job stays
        `running` forever after a crash.
        """
        if not record.is_stale(heartbeat_timeout):
            return record
        error = ServiceError(
            ErrorCode.WORKER_LOST,
            "The worker running this job stopped responding; please upload the video again.",
            {"silent_seconds": round(record.silent_seconds(), 1)},
        )
        self.update(
            record.job_id,
            only_if=(JobStatus.RUNNING,),
            status=JobStatus.FAILED,
            error=error.to_dict(),
            finished_at=now(),
        )
        return self.get(record.job_id) or record

    def fail_stale_running(self, heartbeat_timeout: float) -> list[str]:
        """Sweep every job; returns the ids that were failed as WORKER_LOST."""
        failed = []
        for job_id in self._ids(0, -1, newest_first=False):
            record = self.get(job_id)
            if record is not None and record.is_stale(heartbeat_timeout):
                self.fail_if_stale(record, heartbeat_timeout)
                failed.append(record.job_id)
        return failed

    def delete(self, job_id: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.job(job_id))
        pipe.zrem(self.keys.job_index(), job_id)
        pipe.execute()

    def _ids(self, start: int, end: int, *, newest_first: bool = True) -> list[str]:
        index = self.keys.job_index()
        raw: Any = self.redis.zrevrange(index, start, end) if newest_first else self.redis.zrange(index, start, end)
        return [_text(job_id) for job_id in raw]

    def list(self, *, status: JobStatus | None = None, offset: int = 0, limit: int = 20) -> tuple[list[JobRecord], int]:
        """Newest first. Returns one page and the total number of matching jobs."""
        index = self.keys.job_index()
        if status is None:
            total = int(self.redis.zcard(index))
            records = [self.get(job_id) for job_id in self._ids(offset, offset + limit - 1)]
            return [r for r in records if r is not None], total
        # Filtering needs every record's status; one pipelined HGET per job keeps it one round trip.
        ids = self._ids(0, -1)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self.keys.job(job_id), "status")
        statuses = pipe.execute()
        matching = [
            job_id for job_id, s in zip(ids, statuses, strict=True) if s is not None and _text(s) == status.value
        ]
        records = [self.get(job_id) for job_id in matching[offset : offset + limit]]
        return [r for r in records if r is not None], len(matching)


class AsyncJobReader:
    """The read path polling clients hit, on redis.asyncio so it never waits for a thread."""

    def __init__(self, client: redis.asyncio.Redis, keys: RedisKeys) -> None:
        self.redis = client
        self.keys = keys

    async def get(self, job_id: str) -> JobRecord | None:
        return _record(await self.redis.hgetall(self.keys.job(job_id)))


def _record(raw: Any) -> JobRecord | None:
    """A record from HGETALL's reply (bytes or str), None for a job that does not exist."""
    if not raw:
        return None
    return JobRecord.from_redis({_text(k): _text(v) for k, v in raw.items()})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value
