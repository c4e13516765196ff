"""The RQ queue between the API and the workers.

A job carries only its id, serialized as JSON (never pickle), and the RQ job
id is the job id, so the RQ dashboard and our API name the same thing.
"""

from __future__ import annotations

import contextlib

import redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.job_lifecycle import record_job_failure
from rq.serializers import JSONSerializer

from shared.settings import Settings

# The worker's entry point, named by path so the API never imports worker code.
JOB_FUNCTION = "worker.tasks.run_job"


def hard_timeout_seconds(settings: Settings) -> int:
    """RQ's hard limit for a job: the budget of the longest video we accept.

    The worker narrows it to the real video's duration once it has probed it
    (worker/timeouts.py); this is the backstop for a job that hangs before that.
    """
    return int(settings.job_timeout_base_seconds + settings.job_timeout_factor * settings.max_video_seconds)


def get_queue(settings: Settings, connection: redis.Redis) -> Queue:
    return Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)


def enqueue_job(queue: Queue, settings: Settings, job_id: str, kind: str = "analysis") -> None:
    """`kind` only names the job in the dashboard ("analysis 3f2a…", "comparison 9c1b…")."""
    queue.enqueue(
        JOB_FUNCTION,
        job_id,
        job_id=job_id,
        job_timeout=hard_timeout_seconds(settings),
        result_ttl=24 * 3600,
        failure_ttl=7 * 24 * 3600,
        description=f"{kind} {job_id}",
    )


# --- keeping RQ's view in line with the job records (the dashboard shows RQ's) ------------


def fetch_rq_job(queue: Queue, job_id: str) -> Job | None:
    try:
        return Job.fetch(job_id, connection=queue.connection, serializer=queue.serializer)
    except NoSuchJobError:
        return None


def rq_status(queue: Queue, job_id: str) -> str | None:
    """RQ's status of the job ("queued", "started", "failed"...), None when RQ has no such job."""
    job = fetch_rq_job(queue, job_id)
    if job is None:
        return None
    status = job.get_status(refresh=False)
    return status.value if status is not None else None


def requeue_job(queue: Queue, settings: Settings, job_id: str, kind: str = "analysis") -> None:
    """Enqueue the job again under the same id, whatever RQ made of the last run."""
    job = fetch_rq_job(queue, job_id)
    if job is not None:
        job.delete(remove_from_queue=True)
    enqueue_job(queue, settings, job_id, kind)


def mark_rq_canceled(queue: Queue, job_id: str) -> None:
    job = fetch_rq_job(queue, job_id)
    if job is not None and not job.is_canceled:
        with contextlib.suppress(InvalidJobOperation):
            job.cancel()


def mark_rq_failed(queue: Queue, job_id: str, reason: str) -> None:
    """Move the job to RQ's failed registry (it may be stuck in `started` after its worker died)."""
    job = fetch_rq_job(queue, job_id)
    if job is None or job.is_failed:
        return
    pipe = queue.connection.pipeline()
    job._remove_from_registries(pipeline=pipe, remove_from_queue=True)
    record_job_failure(job, reason, pipe)
    pipe.execute()
