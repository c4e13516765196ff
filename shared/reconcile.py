"""Keeps every job record true to the world, so no accepted upload vanishes or hangs.

A record can fall out of step with what really happens:

- running, but its worker is gone (SIGKILL, out of memory, lost Redis, a
  cold shutdown): the job is run again from its stored upload, up to
  `max_attempts` runs, then failed with WORKER_LOST. What the lost run wrote
  to storage is removed first, so a retry or a failure leaves no results;
- queued, but no queue holds it (the queue was emptied from the dashboard,
  Redis lost a write, a run ended without a final status): enqueued again;
  a comparison that follows an analysis still under way waits for it;
- finished in the record but not in RQ (a run canceled midway): RQ's view is
  corrected, so the dashboard and the API agree;
- a multipart upload abandoned by a dead process or unaborted in an outage;
- a finished job older than `retention_days`: removed with all its files.

`check()` is cheap and runs on every read of a running job whose heartbeat
is late (the API). `worker_gone()` runs when a supervisor sees its worker
exit. `sweep()` looks at everything and runs every few seconds in each
worker, under a Redis lock so one process does it at a time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from rq import Queue

from shared.errors import ErrorCode, ServiceError
from shared.jobs import FINAL_STATUSES, JobKind, JobRecord, JobStatus, JobStore
from shared.keys import job_prefixes, results_prefix
from shared.open_uploads import OpenUploads
from shared.presence import read_presence
from shared.queue import enqueue_job, fetch_rq_job, mark_rq_canceled, mark_rq_failed, requeue_job, rq_status
from shared.settings import Settings
from shared.storage import Storage

log = logging.getLogger(__name__)

# RQ statuses under which a queued record is held by RQ and will run.
_RQ_WAITING = {"queued", "scheduled", "deferred"}
# A record is written just before its RQ job: give enqueueing (and a worker's start) this long.
ENQUEUE_GRACE_SECONDS = 10.0
# Who the audit lines (shared/audit.py) name for what the reconciler does to jobs of lost workers.
RECONCILER = "reconciler"
RETENTION_EVERY_SECONDS = 600.0


@dataclass
class SweepReport:
    retried: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    rq_corrected: list[str] = field(default_factory=list)
    uploads_aborted: int = 0
    expired: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.retried, self.failed, self.requeued, self.rq_corrected, self.uploads_aborted, self.expired))


class Reconciler:
    def __init__(self, store: JobStore, queue: Queue, storage: Storage, settings: Settings) -> None:
        self.store = store
        self.queue = queue
        self.storage = storage
        self.settings = settings
        # The same list the storage's writers keep, so an abort here also takes the entry off it.
        self.open_uploads = storage.open_uploads or OpenUploads(store.redis, store.keys)
        self._last_retention = 0.0

    # --- one job -------------------------------------------------------------------------
    def holds(self, record: JobRecord) -> bool:
        """Whether a live worker says it is running this job."""
        presence = read_presence(self.store.redis, self.store.keys, record.worker)
        return presence is not None and presence.get("job") == record.job_id

    def check(self, record: JobRecord) -> JobRecord:
        """The record as it should be now: a running job whose worker is gone is released."""
        if record.status is not JobStatus.RUNNING:
            return record
        silent = record.silent_seconds()
        if silent < self.settings.worker_presence_ttl_seconds:
            return record  # its heartbeat is fresh: no need to ask
        held = self.holds(record)
        if held and silent < self.settings.heartbeat_timeout_seconds:
            return record
        reason = (
            f"attempt {record.attempts} sent no heartbeat for {silent:.0f} s"
            if held
            else f"the worker running attempt {record.attempts} stopped"
        )
        self.release(record, reason)
        return self.store.get(record.job_id) or record

    def release(self, record: JobRecord, reason: str, *, requeue: bool = True) -> JobStatus | None:
        """Run a job whose worker was lost again, or fail it when it is out of attempts.

        Returns the status it was moved to, None when someone else moved it first.
        `requeue=False` leaves the RQ side to the next sweep (for a worker releasing the
        job it runs: RQ still has to record the end of that run).
        """
        # Whatever the lost run wrote goes first: a retry or a failure never shows part of a result set.
        self.storage.purge_prefix(results_prefix(record.job_id))
        if record.attempts < record.max_attempts:
            if not self.store.retry(record.job_id, reason, worker=record.worker, actor=RECONCILER):
                return None
            if requeue:
                requeue_job(self.queue, self.settings, record.job_id, record.kind.value)
            log.warning("job %s: %s; queued again (attempt %d of %d next)", record.job_id, reason,
                        record.attempts + 1, record.max_attempts)  # fmt: skip
            return JobStatus.QUEUED
        error = ServiceError(
            ErrorCode.WORKER_LOST,
            f"The analysis stopped {record.attempts} times without finishing (the worker running it was lost); "
            "the video may be too demanding for this server.",
            {"attempts": record.attempts, "last": reason},
        )
        current = self.store.get(record.job_id)
        if current is None or current.worker != record.worker:
            return None  # deleted, or another reconciler already acted on this loss
        if not self.store.fail(record.job_id, error, only_if=(JobStatus.RUNNING,), actor=RECONCILER):
            return None
        mark_rq_failed(self.queue, record.job_id, f"WORKER_LOST: {reason}")
        log.error("job %s: %s; failed after %d attempts", record.job_id, reason, record.attempts)
        return JobStatus.FAILED

    def worker_gone(self, name: str) -> list[str]:
        """A supervisor saw worker `name` exit: release its job now, not a TTL later."""
        self.store.redis.delete(self.store.keys.worker(name))
        released = []
        for record in self._records(JobStatus.RUNNING):
            if record.worker == name and self.release(record, f"the worker running attempt {record.attempts} exited"):
                released.append(record.job_id)
        return released

    # --- everything ------------------------------------------------------------------------
    def sweep(self) -> SweepReport:
        report = SweepReport()
        self.store.ensure_status_index()
        for record in self._records(JobStatus.RUNNING):
            after = self.check(record)
            if after.status is JobStatus.QUEUED:
                report.retried.append(record.job_id)
            elif after.status is JobStatus.FAILED:
                report.failed.append(record.job_id)
        report.requeued = self._requeue_orphans()
        report.rq_corrected = self._correct_rq_view()
        report.uploads_aborted = self._abort_abandoned_uploads()
        if time.monotonic() - self._last_retention > RETENTION_EVERY_SECONDS:
            report.expired = self.expire()
            self._last_retention = time.monotonic()
        return report

    def sweep_if_due(self, lock_seconds: float) -> SweepReport | None:
        """`sweep()` unless another process swept in the last `lock_seconds`."""
        if not self.store.redis.set(self.store.keys.reconciler_lock(), "1", nx=True, px=int(lock_seconds * 1000)):
            return None
        return self.sweep()

    def _records(self, status: JobStatus) -> list[JobRecord]:
        records = (self.store.get(job_id) for job_id in self.store.ids(status, newest_first=False))
        return [r for r in records if r is not None and r.status is status]

    def _requeue_orphans(self) -> list[str]:
        requeued = []
        for record in self._records(JobStatus.QUEUED):
            status = rq_status(self.queue, record.job_id)
            if status in _RQ_WAITING:
                continue
            waited = time.time() - (record.queued_at or record.created_at)
            # Missing: maybe not enqueued yet; started: a worker is about to say so. Both get a grace.
            if status in (None, "started") and waited < ENQUEUE_GRACE_SECONDS:
                continue
            if record.kind is JobKind.COMPARISON:
                if self.waits_for_input(record):
                    continue  # follows an analysis still under way: that run enqueues it when it ends
            elif not self.storage.exists(record.source_key):
                error = ServiceError(ErrorCode.SOURCE_MISSING, "The uploaded video is no longer in storage.")
                if self.store.fail(record.job_id, error, only_if=(JobStatus.QUEUED,), actor=RECONCILER):
                    log.error("job %s: queued, but its upload is gone; failed", record.job_id)
                continue
            requeue_job(self.queue, self.settings, record.job_id, record.kind.value)
            log.warning("job %s: queued, but no queue held it (RQ: %s); enqueued again", record.job_id, status)
            requeued.append(record.job_id)
        return requeued

    def queue_follower(self, record: JobRecord) -> None:
        """`record` (an analysis uploaded with a reference) has ended: its comparison can run now.
        Called by the worker that ran it and by the API's cancel and delete. Never raises: a
        comparison nobody could queue (Redis down) is queued by the next sweep instead."""
        if not record.comparison_job_id:
            return
        try:
            follower = self.store.get(record.comparison_job_id)
            if follower is None or follower.status is not JobStatus.QUEUED:
                return
            if rq_status(self.queue, follower.job_id) not in _RQ_WAITING:
                enqueue_job(self.queue, self.settings, follower.job_id, follower.kind.value)
        except Exception:
            log.warning("job %s: could not queue its comparison yet", record.job_id, exc_info=True)

    def waits_for_input(self, record: JobRecord) -> bool:
        """Whether a comparison compares a job that has not finished yet (uploaded with a reference,
        it is created with the analysis it follows and queued once that one ends)."""
        inputs = record.inputs
        if inputs is None:
            return False
        for job_id in inputs.job_ids:
            source = self.store.get(job_id)
            if source is not None and not source.status.is_final:
                return True
        return False

    def _correct_rq_view(self) -> list[str]:
        """Canceled records whose run RQ counted as finished (the worker stopped at a cancel)."""
        corrected = []
        for job_id in self.store.ids(JobStatus.CANCELED, 0, 99):
            if rq_status(self.queue, job_id) in ("finished", "started", "queued"):
                mark_rq_canceled(self.queue, job_id)
                corrected.append(job_id)
        return corrected

    def _abort_abandoned_uploads(self) -> int:
        aborted = 0
        for key, upload_id in self.open_uploads.idle(self.settings.abandoned_upload_seconds):
            try:
                self.storage.abort_multipart(key, upload_id)
            except ServiceError:
                break  # storage is still down: try again next time
            aborted += 1
        if aborted:
            log.warning("aborted %d abandoned multipart upload(s)", aborted)
        return aborted

    # --- removal ---------------------------------------------------------------------------
    def purge(self, job_id: str, *, actor: str = "") -> None:
        """Remove a job completely: its files, unfinished uploads, record and RQ job."""
        for prefix in job_prefixes(job_id):
            self.storage.purge_prefix(prefix)
        job = fetch_rq_job(self.queue, job_id)
        if job is not None:
            job.delete(remove_from_queue=True)
        self.store.delete(job_id, actor=actor)

    def expire(self, limit: int = 100) -> list[str]:
        """Remove finished jobs created more than `retention_days` ago (none when it is 0)."""
        if self.settings.retention_days <= 0:
            return []
        cutoff = time.time() - self.settings.retention_days * 86400
        expired = self.store.created_before(cutoff, FINAL_STATUSES, limit)
        for job_id in expired:
            self.purge(job_id, actor=f"retention ({self.settings.retention_days:g} days)")
        if expired:
            log.info("removed %d job(s) older than %g days", len(expired), self.settings.retention_days)
        return expired
