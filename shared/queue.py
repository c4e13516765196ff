"""The RQ queue between the API and the workers.

A job carries only its id, serialized as JSON (never pickle), and the RQ job
id is the job id, so the RQ dashboard and our API name the same thing.
"""

from __future__ import annotations

import redis
from rq import Queue
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


def enqueue_analysis(queue: Queue, settings: Settings, job_id: str) -> None:
    queue.enqueue(
        JOB_FUNCTION,
        job_id,
        job_id=job_id,
        job_timeout=hard_timeout_seconds(settings),
        result_ttl=24 * 3600,
        failure_ttl=7 * 24 * 3600,
        description=f"analyze {job_id}",
    )
