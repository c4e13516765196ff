"""Jobs: status, listing, results, cancel and delete."""

from __future__ import annotations

import contextlib
import re
from typing import Annotated

from botocore.exceptions import ClientError
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from starlette.concurrency import run_in_threadpool

from backend.deps import QueueDep, ReaderDep, SettingsDep, StorageDep, StoreDep
from backend.errors import error_responses
from backend.views import JobPage, JobView, api_base, job_view
from shared.errors import ErrorCode, ServiceError
from shared.jobs import AsyncJobReader, JobRecord, JobStatus, JobStore, now
from shared.keys import ResultName, job_prefixes, result_key
from shared.settings import Settings

router = APIRouter(prefix="/jobs", tags=["jobs"])

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def _not_found(job_id: str) -> ServiceError:
    return ServiceError(ErrorCode.JOB_NOT_FOUND, f"There is no job {job_id!r}.", {"job_id": job_id})


def load_job(store: JobStore, settings: Settings, job_id: str) -> JobRecord:
    record = store.get(job_id) if _JOB_ID.match(job_id) else None
    if record is None:
        raise _not_found(job_id)
    return store.fail_if_stale(record, settings.heartbeat_timeout_seconds)


async def read_job(reader: AsyncJobReader, store: JobStore, settings: Settings, job_id: str) -> JobRecord:
    """`load_job` for the hot polling path: no thread hop unless the job has gone stale."""
    record = await reader.get(job_id) if _JOB_ID.match(job_id) else None
    if record is None:
        raise _not_found(job_id)
    if record.is_stale(settings.heartbeat_timeout_seconds):
        record = await run_in_threadpool(store.fail_if_stale, record, settings.heartbeat_timeout_seconds)
    return record


@router.get("", response_model=JobPage)
def list_jobs(
    request: Request,
    store: StoreDep,
    storage: StorageDep,
    settings: SettingsDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JobPage:
    """Newest first."""
    records, total = store.list(status=status, offset=offset, limit=limit)
    base = api_base(settings, str(request.base_url))
    views = [job_view(store.fail_if_stale(r, settings.heartbeat_timeout_seconds), storage, base) for r in records]
    return JobPage(jobs=views, total=total, offset=offset, limit=limit)


@router.get("/{job_id}", response_model=JobView, responses=error_responses(404))
async def get_job(
    job_id: str, request: Request, reader: ReaderDep, store: StoreDep, storage: StorageDep, settings: SettingsDep
) -> JobView:
    record = await read_job(reader, store, settings, job_id)
    return job_view(record, storage, api_base(settings, str(request.base_url)))


@router.get(
    "/{job_id}/results/{name}",
    responses={
        200: {"content": {"video/mp4": {}, "application/json": {}, "text/csv": {}}},
        **error_responses(404, 409),
    },
)
def get_result(
    job_id: str,
    name: str,
    store: StoreDep,
    storage: StorageDep,
    settings: SettingsDep,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
) -> Response:
    """Stream one result file (with HTTP Range support, so video players can seek)."""
    record = load_job(store, settings, job_id)
    try:
        result = ResultName(name)
    except ValueError:
        raise ServiceError(
            ErrorCode.RESULT_NOT_FOUND,
            f"There is no result named {name!r}.",
            {"allowed": [n.value for n in ResultName]},
        ) from None
    if record.status is not JobStatus.SUCCEEDED or result.value not in record.results:
        raise ServiceError(
            ErrorCode.RESULT_NOT_READY,
            f"Results are available once the job has succeeded; it is {record.status.value}.",
            {"status": record.status.value},
        )
    try:
        obj = storage.open_stream(result_key(job_id, result), byte_range=range_header)
    except ClientError as exc:
        raise ServiceError(ErrorCode.RESULT_NOT_FOUND, "The result file is missing from storage.") from exc
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(obj["ContentLength"]),
        "Content-Disposition": f'inline; filename="{job_id}-{result.value}"',
    }
    status = 200
    if obj.get("ContentRange"):
        headers["Content-Range"] = obj["ContentRange"]
        status = 206
    body = obj["Body"]
    return StreamingResponse(
        body.iter_chunks(chunk_size=256 * 1024), status_code=status, media_type=result.content_type, headers=headers
    )


@router.post("/{job_id}/cancel", response_model=JobView, responses=error_responses(404, 409))
def cancel_job(
    job_id: str, request: Request, store: StoreDep, storage: StorageDep, settings: SettingsDep, queue: QueueDep
) -> JobView:
    """A queued job never runs; a running one stops at its next progress report (within seconds)."""
    record = load_job(store, settings, job_id)
    if record.status.is_final:
        raise ServiceError(
            ErrorCode.JOB_ALREADY_FINISHED,
            f"The job has already finished ({record.status.value}); there is nothing to cancel.",
            {"status": record.status.value},
        )
    canceled = store.update(
        job_id,
        only_if=(JobStatus.QUEUED, JobStatus.RUNNING),
        status=JobStatus.CANCELED,
        finished_at=now(),
    )
    if not canceled:  # it finished in the meantime
        record = load_job(store, settings, job_id)
        raise ServiceError(
            ErrorCode.JOB_ALREADY_FINISHED,
            f"The job has already finished ({record.status.value}).",
            {"status": record.status.value},
        )
    if record.status is JobStatus.QUEUED:
        _drop_from_queue(queue, job_id)
    return job_view(load_job(store, settings, job_id), storage, api_base(settings, str(request.base_url)))


@router.delete("/{job_id}", status_code=204, responses=error_responses(404, 409))
def delete_job(job_id: str, store: StoreDep, storage: StorageDep, settings: SettingsDep, queue: QueueDep) -> Response:
    """Remove the job record and every object of the job. A running job must be canceled first."""
    record = load_job(store, settings, job_id)
    if record.status is JobStatus.RUNNING:
        raise ServiceError(
            ErrorCode.JOB_RUNNING,
            "The job is running; cancel it first, then delete it.",
            {"status": record.status.value, "cancel_url": f"/jobs/{job_id}/cancel"},
        )
    if record.status is JobStatus.QUEUED:
        if not store.update(job_id, only_if=(JobStatus.QUEUED,), status=JobStatus.CANCELED, finished_at=now()):
            raise ServiceError(ErrorCode.JOB_RUNNING, "The job just started; cancel it first, then delete it.")
        _drop_from_queue(queue, job_id)
    for prefix in job_prefixes(job_id):
        storage.delete_prefix(prefix)
    store.delete(job_id)
    return Response(status_code=204)


def _drop_from_queue(queue: Queue, job_id: str) -> None:
    # The worker also skips jobs that are no longer queued; this just keeps the queue tidy.
    with contextlib.suppress(NoSuchJobError):
        Job.fetch(job_id, connection=queue.connection, serializer=queue.serializer).cancel()
