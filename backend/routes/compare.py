"""`POST /compare`: a comparison job of two analysed performances (a reference and an attempt).

A comparison reads both analyses' poses.json and annotated.mp4 (it never runs pose
estimation again), aligns the attempt onto the reference and renders them side by
side (worker/compare.py). It is a job like any other: owned by the caller's key,
listed, polled, canceled and deleted the same way. Both inputs must be the caller's
own succeeded analyses; another key's job does not exist for the caller (404).
"""

from __future__ import annotations

import contextlib
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from rq import Queue
from starlette.concurrency import run_in_threadpool

from backend.auth import Caller, CallerDep
from backend.deps import LimitsDep, QueueDep, SettingsDep, StoreDep
from backend.errors import error_responses
from backend.views import JobAccepted, api_base
from shared.errors import ErrorCode, ServiceError
from shared.jobs import JOB_ID_PATTERN, Comparison, JobKind, JobRecord, JobStatus, JobStore, Mirror, new_job_id
from shared.queue import enqueue_job
from shared.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(tags=["comparison"])


class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference_job_id: str = Field(pattern=JOB_ID_PATTERN, description="The analysis to compare with (the teacher).")
    attempt_job_id: str = Field(pattern=JOB_ID_PATTERN, description="The analysis compared with it.")
    mirror: Mirror = Field(
        Mirror.AUTO,
        description="`on`: compare the attempt's mirror image (a class facing its teacher); `off`: as it is; "
        "`auto`: both, keeping the closer.",
    )
    reference_track_id: int | None = Field(None, ge=1, description="The reference's dancer; default: seen longest.")
    attempt_track_id: int | None = Field(None, ge=1, description="The attempt's dancer; default: seen longest.")

    def comparison(self) -> Comparison:
        return Comparison(
            reference_job_id=self.reference_job_id,
            attempt_job_id=self.attempt_job_id,
            mirror=self.mirror,
            reference_track_id=self.reference_track_id,
            attempt_track_id=self.attempt_track_id,
        )


def comparable(store: JobStore, caller: Caller, job_id: str, role: str, *, finished: bool = True) -> JobRecord:
    """The caller's analysis `job_id`, fit to be compared; `role` ("reference", "attempt") names it in errors.

    `finished=False` accepts an analysis still under way (the attempt uploaded with a reference)."""
    record = store.get(job_id)
    if record is None or not caller.owns(record):
        raise ServiceError(ErrorCode.JOB_NOT_FOUND, f"There is no job {job_id!r}.", {"job_id": job_id, "role": role})
    if record.kind is not JobKind.ANALYSIS:
        raise ServiceError(
            ErrorCode.NOT_AN_ANALYSIS,
            f"The {role} {job_id!r} is a comparison; compare two analyses.",
            {"job_id": job_id, "role": role, "kind": record.kind.value},
        )
    if finished and record.status is not JobStatus.SUCCEEDED:
        advice = "once it has succeeded" if not record.status.is_final else "with an analysis that succeeded"
        raise ServiceError(
            ErrorCode.JOB_NOT_READY,
            f"The {role} {job_id!r} is {record.status.value}; compare it {advice}.",
            {"job_id": job_id, "role": role, "status": record.status.value},
        )
    return record


def comparison_record(
    settings: Settings, caller: Caller, comparison: Comparison, reference: JobRecord, attempt_filename: str
) -> JobRecord:
    return JobRecord(
        job_id=new_job_id(),
        kind=JobKind.COMPARISON,
        comparison=comparison.to_dict(),
        mode=settings.mode,
        filename=f"{attempt_filename} vs {reference.filename}",
        max_attempts=settings.max_attempts,
        owner=caller.key_id,
    )


def create_and_enqueue(
    store: JobStore, queue: Queue, settings: Settings, record: JobRecord, actor: str, follower: JobRecord | None = None
) -> None:
    """Record the job, then enqueue it; a job that could not be queued is not left recorded.

    `follower` (a comparison that waits for this analysis) is recorded first and not enqueued:
    the worker queues it when the analysis ends. It goes too when a later step fails."""
    created: list[str] = []
    try:
        for job in (follower, record):
            if job is not None:
                store.create(job, actor=actor)
                created.append(job.job_id)
    except Exception as exc:
        _forget(store, created, actor)
        raise ServiceError(
            ErrorCode.QUEUE_UNAVAILABLE, "The job queue (Redis) is unavailable.", {"reason": str(exc)}
        ) from exc
    try:
        enqueue_job(queue, settings, record.job_id, record.kind.value)
    except Exception as exc:
        _forget(store, created, actor)
        raise ServiceError(ErrorCode.QUEUE_UNAVAILABLE, "The job could not be queued.", {"reason": str(exc)}) from exc


def _forget(store: JobStore, job_ids: list[str], actor: str) -> None:
    for job_id in job_ids:
        with contextlib.suppress(Exception):
            store.delete(job_id, actor=actor)


def _create(store: JobStore, queue: Queue, settings: Settings, caller: Caller, body: CompareRequest) -> JobRecord:
    reference = comparable(store, caller, body.reference_job_id, "reference")
    attempt = comparable(store, caller, body.attempt_job_id, "attempt")
    record = comparison_record(settings, caller, body.comparison(), reference, attempt.filename)
    create_and_enqueue(store, queue, settings, record, caller.label)
    return record


@router.post(
    "/compare",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(401, 404, 409, 422, 429, 503),
)
async def compare(
    body: CompareRequest,
    request: Request,
    caller: CallerDep,
    settings: SettingsDep,
    store: StoreDep,
    queue: QueueDep,
    limits: LimitsDep,
) -> JSONResponse:
    """Compare two of the caller's succeeded analyses: the attempt aligned onto the reference in time
    (invariant to position, scale and, with `mirror`, to mirroring), a similarity score per joint and
    overall, the worst-matching moments and a side-by-side video (results `comparison.json`, `comparison.mp4`).

    404 JOB_NOT_FOUND for an unknown or another key's job; 409 JOB_NOT_READY for one that has not
    succeeded; 422 NOT_AN_ANALYSIS for a comparison given as input."""
    await run_in_threadpool(limits.check_queue, caller)
    record = await run_in_threadpool(_create, store, queue, settings, caller, body)
    log.info(
        "job %s queued: compare %s with reference %s",
        record.job_id, body.attempt_job_id, body.reference_job_id, extra={"job_id": record.job_id},
    )  # fmt: skip
    base = api_base(settings, str(request.base_url))
    accepted = JobAccepted(job_id=record.job_id, status=record.status, status_url=f"{base}/jobs/{record.job_id}")
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202, headers={"Location": accepted.status_url})
