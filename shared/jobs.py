"""The job record and its state machine: what a client sees when it polls, in one Redis hash.

    queued ──start──▶ running ──succeed──▶ succeeded
      ▲                 │  ├───fail──────▶ failed      (also from queued)
      └─────retry───────┘  └───cancel────▶ canceled    (also from queued)

The API creates a record, the worker moves it forward, the reconciler
(shared/reconcile.py) retries or fails the jobs of dead workers; all of them
go through `JobStore`'s named transitions (`TRANSITIONS` is the one list of
what may follow what). Each is atomic (a Lua compare-and-set), so a cancel
racing a worker is never overwritten by a late progress update, and each also
keeps the per-status index that `GET /jobs?status=` pages through.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import redis
import redis.asyncio

from shared.audit import audit
from shared.errors import ServiceError
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


class JobKind(str, Enum):
    """What a job does: analyse one uploaded video, or compare two analysed ones."""

    ANALYSIS = "analysis"
    COMPARISON = "comparison"


class JobStage(str, Enum):
    """What a running job is doing right now."""

    QUEUED = "queued"
    FETCHING = "fetching"
    PROBING = "probing"
    LISTENING = "listening"  # an analysis finding the music's beats
    ANALYZING = "analyzing"
    ALIGNING = "aligning"  # a comparison aligning the two performances
    RENDERING = "rendering"
    EXPORTING = "exporting"
    UPLOADING = "uploading"
    DONE = "done"


@dataclass(frozen=True)
class Transition:
    sources: frozenset[JobStatus]
    target: JobStatus | None  # None: the status stays as it is


Q, R = JobStatus.QUEUED, JobStatus.RUNNING
TRANSITIONS: dict[str, Transition] = {
    "start": Transition(frozenset({Q}), R),
    "report": Transition(frozenset({R}), None),
    "succeed": Transition(frozenset({R}), JobStatus.SUCCEEDED),
    "fail": Transition(frozenset({Q, R}), JobStatus.FAILED),
    "cancel": Transition(frozenset({Q, R}), JobStatus.CANCELED),
    "retry": Transition(frozenset({R}), Q),
}


# The audit line's action for each transition that changes the status (shared/audit.py).
AUDITED = {
    "start": "job.started",
    "succeed": "job.succeeded",
    "fail": "job.failed",
    "cancel": "job.canceled",
    "retry": "job.retried",
}


def now() -> float:
    return time.time()


# A job id: 32 lowercase hex digits (a uuid4). Also the RQ job id, and part of every storage key of the job.
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
_JOB_ID = re.compile(JOB_ID_PATTERN)


def new_job_id() -> str:
    return uuid.uuid4().hex


def is_job_id(text: str) -> bool:
    return _JOB_ID.match(text) is not None


class Mirror(str, Enum):
    """Whether a comparison looks at the attempt as it is, as its mirror image, or tries both."""

    AUTO = "auto"  # both; the closer one wins (a class facing its teacher mirrors them)
    ON = "on"
    OFF = "off"

    @property
    def option(self) -> bool | None:
        """The `mirror` argument of worker.pipeline.align.align."""
        return {Mirror.AUTO: None, Mirror.ON: True, Mirror.OFF: False}[self]


@dataclass(frozen=True)
class Comparison:
    """A comparison job's inputs: two succeeded analyses of the same caller, and how to compare them."""

    reference_job_id: str  # e.g. the teacher
    attempt_job_id: str  # the dancer compared with them
    mirror: Mirror = Mirror.AUTO
    # Which dancer of each video; None: the one seen longest.
    reference_track_id: int | None = None
    attempt_track_id: int | None = None

    @property
    def job_ids(self) -> tuple[str, str]:
        return self.reference_job_id, self.attempt_job_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_job_id": self.reference_job_id,
            "attempt_job_id": self.attempt_job_id,
            "mirror": self.mirror.value,
            "reference_track_id": self.reference_track_id,
            "attempt_track_id": self.attempt_track_id,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Comparison:
        return cls(
            reference_job_id=raw["reference_job_id"],
            attempt_job_id=raw["attempt_job_id"],
            mirror=Mirror(raw.get("mirror") or Mirror.AUTO.value),
            reference_track_id=raw.get("reference_track_id"),
            attempt_track_id=raw.get("attempt_track_id"),
        )


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
    # Runs started so far (a job whose worker died is run again, up to max_attempts).
    attempts: int = 0
    max_attempts: int = 1
    # The worker running it (its presence key says whether it is alive); empty unless running.
    worker: str = ""
    queued_at: float | None = None
    # Why the job went back to the queue, when it did.
    retry_reason: str = ""
    # The id of the API key that created it (shared/apikeys.py); empty for a job made with the API open.
    owner: str = ""
    kind: JobKind = JobKind.ANALYSIS
    # A comparison's inputs and options (see `Comparison`); None for an analysis.
    comparison: dict[str, Any] | None = None
    # An analysis uploaded with a reference: the comparison job that runs once it ends.
    comparison_job_id: str = ""
    # One more on every visible change (a heartbeat alone is not one): what `GET /jobs/{id}`'s
    # ETag and a long poll's "has it changed?" are made of (backend/status.py).
    version: int = 0

    # Fields stored as JSON text in the hash.
    _JSON_FIELDS = ("error", "results", "video", "comparison")
    _FLOAT_FIELDS = ("progress", "created_at", "started_at", "finished_at", "heartbeat_at", "queued_at")
    _INT_FIELDS = ("frames_done", "frames_total", "size_bytes", "attempts", "max_attempts", "version")

    @property
    def inputs(self) -> Comparison | None:
        """What a comparison compares; None for an analysis."""
        return Comparison.from_dict(self.comparison) if self.comparison else None

    def silent_seconds(self) -> float:
        """Seconds since the last sign of life from the job's worker (or since it was created)."""
        return now() - (self.heartbeat_at or self.started_at or self.created_at)

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
        values["kind"] = JobKind(values.get("kind") or JobKind.ANALYSIS.value)
        values["progress"] = values.get("progress") or 0.0
        values["results"] = values.get("results") or []
        values.setdefault("max_attempts", 1)
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


# KEYS[1] job hash, KEYS[2] events channel; ARGV[1] job id, ARGV[2] allowed statuses
# ("," separated, empty: any), ARGV[3] prefix of the per-status index keys, ARGV[4] a field
# to increment by one (empty: none), ARGV[5] prefix of the per-owner keys (the owner's
# per-status index is `<prefix><owner>:jobs:<status>`, as RedisKeys.owner_jobs_in names it),
# ARGV[6] "1" for a change nobody sees (a heartbeat: no new version, nothing published),
# then field/value pairs. Returns 1 when applied, 0 when the job is in another status, -1
# when the job does not exist.
_UPDATE_IF_STATUS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local before = redis.call('HGET', KEYS[1], 'status')
local allowed = ARGV[2]
if allowed ~= '' and not string.find(',' .. allowed .. ',', ',' .. before .. ',', 1, true) then return 0 end
if ARGV[4] ~= '' then redis.call('HINCRBY', KEYS[1], ARGV[4], 1) end
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local after = redis.call('HGET', KEYS[1], 'status')
if after ~= before then
  local created = redis.call('HGET', KEYS[1], 'created_at')
  redis.call('ZREM', ARGV[3] .. before, ARGV[1])
  redis.call('ZADD', ARGV[3] .. after, created, ARGV[1])
  local owner = redis.call('HGET', KEYS[1], 'owner')
  if owner and owner ~= '' then
    local jobs = ARGV[5] .. owner .. ':jobs:'
    redis.call('ZREM', jobs .. before, ARGV[1])
    redis.call('ZADD', jobs .. after, created, ARGV[1])
  end
end
if ARGV[6] ~= '1' then
  redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('PUBLISH', KEYS[2], after)
end
return 1
"""


class JobStore:
    """Reads and writes job records; the only code that touches their Redis keys."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self.redis = client
        self.keys = keys
        self._update_if_status = client.register_script(_UPDATE_IF_STATUS)

    def create(self, record: JobRecord, *, actor: str = "") -> None:
        record.queued_at = record.queued_at or record.created_at
        record.version = max(record.version, 1)
        pipe = self.redis.pipeline(transaction=True)
        fields: dict[Any, Any] = record.to_redis()  # redis-py's Mapping type is invariant in its keys
        pipe.hset(self.keys.job(record.job_id), mapping=fields)
        pipe.zadd(self.keys.job_index(), {record.job_id: record.created_at})
        pipe.zadd(self.keys.jobs_in(record.status.value), {record.job_id: record.created_at})
        if record.owner:
            pipe.zadd(self.keys.owner_jobs(record.owner), {record.job_id: record.created_at})
            pipe.zadd(self.keys.owner_jobs_in(record.owner, record.status.value), {record.job_id: record.created_at})
        pipe.execute()
        audit(
            "job.created", actor=actor, job_id=record.job_id,
            owner=record.owner, size_bytes=record.size_bytes, profile=Profile(record.profile).value,
        )  # fmt: skip

    def get(self, job_id: str) -> JobRecord | None:
        return _record(self.redis.hgetall(self.keys.job(job_id)))

    # --- the transitions (TRANSITIONS says which status each may start from) -----------
    def start(self, job_id: str, worker: str) -> bool:
        """A worker takes a queued job: one more attempt."""
        moment = now()
        return self._apply(
            "start",
            job_id,
            actor=f"worker:{worker}",
            increment="attempts",
            stage=JobStage.FETCHING,
            started_at=moment,
            heartbeat_at=moment,
            worker=worker,
        )

    def report(self, job_id: str, **fields: Any) -> bool:
        """Progress of a running job; False once it is no longer running (canceled, retried, deleted)."""
        if "status" in fields:
            raise ValueError("report() cannot change the status; use a transition")
        return self._apply("report", job_id, **fields)

    def succeed(self, job_id: str, results: list[str], frames_done: int, *, actor: str = "") -> bool:
        return self._apply(
            "succeed",
            job_id,
            actor=actor,
            stage=JobStage.DONE,
            progress=1.0,
            frames_done=frames_done,
            results=results,
            finished_at=now(),
        )

    def fail(self, job_id: str, error: ServiceError, *, only_if: tuple[JobStatus, ...] = (), actor: str = "") -> bool:
        return self._apply(
            "fail", job_id, only_if=only_if, actor=actor, why=error.code.value, error=error.to_dict(), finished_at=now()
        )

    def cancel(self, job_id: str, *, only_if: tuple[JobStatus, ...] = (), actor: str = "") -> bool:
        return self._apply("cancel", job_id, only_if=only_if, actor=actor, finished_at=now())

    def retry(self, job_id: str, reason: str, *, worker: str | None = None, actor: str = "") -> bool:
        """Back to the queue after its worker was lost. With `worker`, only while that worker
        still holds it (so two reconcilers cannot both act on one loss)."""
        if worker is not None:
            record = self.get(job_id)
            if record is None or record.worker != worker:
                return False
        return self._apply(
            "retry",
            job_id,
            actor=actor,
            why=reason,
            stage=JobStage.QUEUED,
            progress=0.0,
            frames_done=0,
            started_at=None,
            heartbeat_at=None,
            worker="",
            queued_at=now(),
            retry_reason=reason,
        )

    def _apply(
        self,
        name: str,
        job_id: str,
        *,
        only_if: tuple[JobStatus, ...] = (),
        increment: str = "",
        actor: str = "",
        why: str = "",
        **fields: Any,
    ) -> bool:
        transition = TRANSITIONS[name]
        sources = tuple(s for s in JobStatus if s in transition.sources and (not only_if or s in only_if))
        if transition.target is not None:
            fields["status"] = transition.target
        applied = self.update(job_id, only_if=sources, increment=increment, **fields)
        if applied and name in AUDITED:  # a change of status, not a progress report
            audit(AUDITED[name], actor=actor, job_id=job_id, **({"reason": why} if why else {}))
        return applied

    def update(self, job_id: str, *, only_if: tuple[JobStatus, ...] = (), increment: str = "", **fields: Any) -> bool:
        """The compare-and-set under every transition: set fields atomically, only while the job
        is in one of `only_if` (any status when empty). Application code changes a status only
        through the transitions above; tests use this to put a job in a given state.

        Returns False when the job is in another status or does not exist.
        """
        if increment and increment not in JobRecord._INT_FIELDS:
            raise KeyError(f"cannot increment job field {increment!r}")
        allowed = ",".join(status.value for status in only_if)
        # A heartbeat alone changes nothing a client sees: no new version, no wake-up for every
        # API process and event stream watching the job.
        quiet = "1" if not increment and fields.keys() == {"heartbeat_at"} else ""
        args: list[str] = [job_id, allowed, self.keys.jobs_in(""), increment, self.keys.owner_prefix(), quiet]
        for name, value in encode_fields(fields).items():
            args += [name, value]
        applied = self._update_if_status(keys=[self.keys.job(job_id), self.keys.job_events(job_id)], args=args)
        return int(applied) == 1

    def delete(self, job_id: str, *, actor: str = "") -> None:
        owner = _text(self.redis.hget(self.keys.job(job_id), "owner") or "")
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.job(job_id))
        pipe.zrem(self.keys.job_index(), job_id)
        for status in JobStatus:
            pipe.zrem(self.keys.jobs_in(status.value), job_id)
        if owner:
            pipe.zrem(self.keys.owner_jobs(owner), job_id)
            for status in JobStatus:
                pipe.zrem(self.keys.owner_jobs_in(owner, status.value), job_id)
        pipe.publish(self.keys.job_events(job_id), "deleted")  # caches and waiters of the job let go
        deleted = pipe.execute()[0]
        if deleted:
            audit("job.deleted", actor=actor, job_id=job_id)

    # --- reading many ------------------------------------------------------------------
    def _index(self, status: JobStatus | None, owner: str | None) -> str:
        """The sorted set of job ids to read: all jobs, or one status, of everyone or of one owner."""
        if owner is None:
            return self.keys.job_index() if status is None else self.keys.jobs_in(status.value)
        return self.keys.owner_jobs(owner) if status is None else self.keys.owner_jobs_in(owner, status.value)

    def ids(
        self,
        status: JobStatus | None = None,
        start: int = 0,
        end: int = -1,
        *,
        newest_first: bool = True,
        owner: str | None = None,
    ) -> list[str]:
        """Job ids, of every owner (`owner=None`) or of one API key."""
        index = self._index(status, owner)
        raw: Any = self.redis.zrevrange(index, start, end) if newest_first else self.redis.zrange(index, start, end)
        return [_text(job_id) for job_id in raw]

    def count(self, status: JobStatus | None = None, *, owner: str | None = None) -> int:
        return int(self.redis.zcard(self._index(status, owner)))

    def created_before(self, cutoff: float, statuses: frozenset[JobStatus], limit: int = 100) -> list[str]:
        """Ids of jobs in `statuses` created before `cutoff` (a Unix time), oldest first."""
        found: list[str] = []
        for status in sorted(statuses, key=lambda s: s.value):
            raw: Any = self.redis.zrangebyscore(self.keys.jobs_in(status.value), "-inf", f"({cutoff}", 0, limit)
            found += [_text(job_id) for job_id in raw]
        return found[:limit]

    def list(
        self, *, status: JobStatus | None = None, offset: int = 0, limit: int = 20, owner: str | None = None
    ) -> tuple[list[JobRecord], int]:
        """Newest first, of every owner or of one. Returns one page and the total number of
        matching jobs; reads only that page."""
        total = self.count(status, owner=owner)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in self.ids(status, offset, offset + limit - 1, owner=owner):
            pipe.hgetall(self.keys.job(job_id))
        records = [_record(raw) for raw in pipe.execute()]
        return [r for r in records if r is not None], total

    def ensure_status_index(self) -> int:
        """Build the per-status index for records written before it existed (once per Redis).

        Returns the number of records indexed (0 when it was already built)."""
        marker = self.keys.status_index_marker()
        if self.redis.exists(marker):
            return 0
        ids = self.ids(newest_first=False)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.keys.job(job_id), "status", "created_at")
        indexed = 0
        write = self.redis.pipeline(transaction=False)
        for job_id, (status, created) in zip(ids, pipe.execute(), strict=True):
            if status is None:
                continue
            write.zadd(self.keys.jobs_in(_text(status)), {job_id: float(_text(created) or 0)})
            indexed += 1
        write.set(marker, "1")
        write.execute()
        return indexed


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
