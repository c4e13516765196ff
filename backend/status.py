"""Reading a job's status, the call every client makes over and over: cheap when nothing changed.

    GET /jobs/{id}                    the view, with `ETag: W/"<version>"`
    GET /jobs/{id}  If-None-Match     304, no body, while the job is unchanged
    GET /jobs/{id}?wait=30            answers when the job changes, or after 30 s

Each job's serialized view is kept per caller scope (the links in it are the
caller's) until the job changes: the change feed (backend/changes.py) drops it
on the job's next PUBLISH, so a poll of an unchanged job reads nothing from
Redis and builds nothing. An entry is also dropped when it could be out of
date without any PUBLISH: a running job whose heartbeat is due (the
reconciler must look at it: read_job), and result links halfway to expiry
(new links, and a new ETag so a client holding the old ones gets them).

The ETag is the record's version (shared/jobs.py: one more per visible
change), so every API process gives the same one for the same state. It is
weak: two processes' presigned links differ in their signing time but are
equally good.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from backend.auth import Caller
from backend.changes import ChangeFeed
from backend.views import JobViewer
from shared.errors import ErrorCode, ServiceError
from shared.jobs import AsyncJobReader, JobRecord, JobStatus, is_job_id
from shared.reconcile import Reconciler
from shared.settings import Settings

MAX_WAIT_SECONDS = 60  # under the idle timeout of common proxies (nginx: 60 s)
# The longest a view is kept even without a change message: what a lost message or a record
# written behind the store's back (no PUBLISH) can cost. Module-level so tests can shorten it.
TRUST_SECONDS = 5.0


def not_found(job_id: str) -> ServiceError:
    return ServiceError(ErrorCode.JOB_NOT_FOUND, f"There is no job {job_id!r}.", {"job_id": job_id})


def checked(reconciler: Reconciler, record: JobRecord) -> JobRecord:
    """The record once the reconciler has looked at it (a job whose worker died is released).
    Storage being down must not hide the job: then it is shown as it is."""
    try:
        return reconciler.check(record)
    except ServiceError:
        return record


async def read_job(reader: AsyncJobReader, reconciler: Reconciler, job_id: str, caller: Caller) -> JobRecord:
    """The caller's job, for the hot path: no thread hop unless a running job's heartbeat is late.
    Another key's job does not exist for the caller (404, as an unknown id)."""
    record = await reader.get(job_id) if is_job_id(job_id) else None
    if record is None or not caller.may_see(record.owner):
        raise not_found(job_id)
    if record.status is JobStatus.RUNNING and _heartbeat_due_in(record, reconciler.settings) <= 0:
        record = await run_in_threadpool(checked, reconciler, record)
    return record


def _heartbeat_due_in(record: JobRecord, settings: Settings) -> float:
    """Seconds until a running job's silence makes the reconciler look at it."""
    return settings.worker_presence_ttl_seconds - record.silent_seconds()


@dataclass(frozen=True)
class StatusView:
    """One job's view, serialized, as one caller sees it."""

    body: bytes
    etag: str
    owner: str
    final: bool
    fresh_until: float  # time.monotonic() after which it must be read again


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110's weak comparison of an If-None-Match header with our ETag."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    ours = _opaque(etag)
    return any(_opaque(tag) == ours for tag in if_none_match.split(","))


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


class StatusViews:
    """The serialized views of recently read jobs, per caller scope, valid until the job changes."""

    def __init__(
        self, feed: ChangeFeed, reader: AsyncJobReader, reconciler: Reconciler, capacity: int = 10_000
    ) -> None:
        self.feed = feed
        self.reader = reader
        self.reconciler = reconciler
        self.settings = reconciler.settings
        self.capacity = capacity
        self._entries: OrderedDict[str, dict[tuple[str, str], StatusView]] = OrderedDict()
        self.hits = self.misses = 0
        feed.on_change(self._forget)

    def _forget(self, job_id: str | None) -> None:
        if job_id is None:
            self._entries.clear()
        else:
            self._entries.pop(job_id, None)

    async def get(self, job_id: str, caller: Caller, viewer: JobViewer, *, fresh: bool = False) -> StatusView:
        """The job's view now: from the cache while it is unchanged, else (or when `fresh`) read and built."""
        self.feed.ensure_running()
        if self.feed.live and not fresh:
            cached = self._entries.get(job_id, {}).get(viewer.scope)
            if cached is not None and cached.fresh_until > time.monotonic():
                if not caller.may_see(cached.owner):
                    raise not_found(job_id)
                self._entries.move_to_end(job_id)
                self.hits += 1
                return cached
        self.misses += 1
        seen = self.feed.generation(job_id)
        record = await read_job(self.reader, self.reconciler, job_id, caller)
        view = self._build(record, viewer)
        # Kept only if no change came in while it was read: else it may already be stale.
        if self.feed.live and self.feed.generation(job_id) == seen:
            self._entries.setdefault(job_id, {})[viewer.scope] = view
            self._entries.move_to_end(job_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return view

    async def changed(
        self, job_id: str, caller: Caller, viewer: JobViewer, known: str | None, seconds: float
    ) -> StatusView:
        """A long poll: the view once its ETag differs from `known` (the client's If-None-Match,
        else the state when the request came), or after `seconds`, or at once for a final job."""
        deadline = time.monotonic() + min(seconds, MAX_WAIT_SECONDS)
        with self.feed.watch(job_id) as changed:  # before the first read: no change slips between
            view = await self.get(job_id, caller, viewer)
            known = known or view.etag
            while not view.final and etag_matches(known, view.etag):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                await self.feed.wait(changed, left)
                view = await self.get(job_id, caller, viewer)
        return view

    def _build(self, record: JobRecord, viewer: JobViewer) -> StatusView:
        body = viewer(record).model_dump_json().encode()
        now = time.monotonic()
        etag = f'W/"{record.version}"'
        fresh_until = now + TRUST_SECONDS
        if record.status is JobStatus.RUNNING:
            fresh_until = min(fresh_until, now + _heartbeat_due_in(record, self.settings))
        elif record.status is JobStatus.SUCCEEDED and record.results:
            # Links are new in each half of their lifetime, the same halves in every process.
            half = self.settings.presign_expiry_seconds / 2
            wall = time.time()
            period = int(wall // half)
            etag = f'W/"{record.version}.{period}"'
            fresh_until = min(fresh_until, now + ((period + 1) * half - wall))
        return StatusView(body, etag, record.owner, record.status.is_final, fresh_until)
