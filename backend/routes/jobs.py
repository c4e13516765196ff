"""Jobs: status, listing, results, cancel and delete."""

from __future__ import annotations

import re
from typing import Annotated, Any

from botocore.exceptions import ClientError
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from backend.auth import Caller, CallerDep, Documented, caller_of_link
from backend.deps import ReconcilerDep, StorageDep, StoreDep
from backend.errors import envelope, error_responses
from backend.status import MAX_WAIT_SECONDS, StatusViews, checked, etag_matches, not_found
from backend.views import JobPage, JobView, ViewerDep, viewer_for
from shared.errors import ErrorCode, ServiceError
from shared.jobs import JobRecord, JobStatus, is_job_id
from shared.keys import ResultName, result_key
from shared.queue import mark_rq_canceled
from shared.reconcile import Reconciler
from shared.storage import Storage

router = APIRouter(prefix="/jobs", tags=["jobs"])

# Far beyond any real number of jobs, and far inside Redis's 64-bit range arguments
# (a larger offset made ZRANGE fail with a 500).
MAX_OFFSET = 1_000_000_000

# One byte range: `bytes=first-last`, `bytes=first-` or `bytes=-suffix` (RFC 9110 section 14.1.2).
_BYTE_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
# Positions this large are past any file; S3 servers refuse numbers beyond 64 bits.
_MAX_POSITION = 2**62


def load_job(reconciler: Reconciler, job_id: str, caller: Caller) -> JobRecord:
    """The caller's job; another key's job does not exist for it (404, as an unknown id)."""
    record = reconciler.store.get(job_id) if is_job_id(job_id) else None
    if record is None or not caller.owns(record):
        raise not_found(job_id)
    return checked(reconciler, record)


@router.get("", response_model=JobPage, responses=error_responses(401, 503))
def list_jobs(
    caller: CallerDep,
    store: StoreDep,
    reconciler: ReconcilerDep,
    viewer: ViewerDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JobPage:
    """The caller's jobs (an admin key's: everyone's), newest first."""
    records, total = store.list(status=status, offset=offset, limit=limit, owner=caller.owner_filter)
    views = [viewer(checked(reconciler, r)) for r in records]
    return JobPage(jobs=views, total=total, offset=offset, limit=limit)


_STATUS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The job. Its `ETag` changes with it: send it back as `If-None-Match`.",
        "headers": {"ETag": {"schema": {"type": "string"}, "description": 'W/"<version>"'}},
    },
    304: {"description": "Not modified: the job is as the `If-None-Match` ETag says (no body)."},
    **error_responses(401, 404, 503),
}


@router.get("/{job_id}", response_model=JobView, responses=_STATUS_RESPONSES)
async def get_job(
    job_id: str,
    request: Request,
    caller: CallerDep,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="Long poll: answer as soon as the job differs from `If-None-Match` (or, without "
            "it, from how it is now), or after this many seconds. A final job answers at once.",
        ),
    ] = 0,
    if_none_match: Annotated[str | None, Header(description="The ETag of the view you have.")] = None,
) -> Response:
    """The job's status. Cheap to poll: send the last `ETag` as `If-None-Match` and an
    unchanged job answers 304 with no body; add `?wait=30` and it answers when it changes."""
    statuses: StatusViews = request.app.state.statuses
    viewer = viewer_for(request, caller)
    if wait > 0:
        view = await statuses.changed(job_id, caller, viewer, if_none_match, wait)
    else:
        view = await statuses.get(job_id, caller, viewer)
    headers = {"ETag": view.etag, "Cache-Control": "private, no-cache"}
    if etag_matches(if_none_match, view.etag):
        return Response(status_code=304, headers=headers)
    return Response(view.body, media_type="application/json", headers=headers)


def _position(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    # Checked before int(): Python refuses to convert strings of thousands of digits.
    return _MAX_POSITION if len(digits) > 19 else min(int(digits), _MAX_POSITION)


def s3_range(header: str | None) -> str | None:
    """The client's Range header as S3 should get it, or None for the whole file.

    RFC 9110 lets a server ignore a Range header, and we do for anything but one
    well-formed byte range (another unit, several ranges, last before first, garbage),
    so every S3 server sees the same few forms and the client gets a 200 with the file."""
    match = _BYTE_RANGE.match(header or "")
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        return f"bytes=-{_position(last)}" if last else None
    start = _position(first)
    if not last:
        return f"bytes={start}-"
    end = _position(last)
    return f"bytes={start}-{end}" if end >= start else None


def _unsatisfiable(header: str | None, size: int) -> JSONResponse:
    # RFC 9110 section 15.5.17: a 416 says how long the file is.
    shown = (header or "")[:100]  # echo a little of what was asked, not kilobytes of digits
    message = f"The range {shown!r} selects no byte of the file ({size} bytes)."
    return JSONResponse(
        envelope(ErrorCode.RANGE_NOT_SATISFIABLE, message, {"range": shown, "size": size}),
        status_code=416,
        headers={"Content-Range": f"bytes */{size}"},
    )


_RANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"video/mp4": {}, "application/json": {}, "text/csv": {}}, "description": "The whole file."},
    206: {
        "content": {"video/mp4": {}, "application/json": {}, "text/csv": {}},
        "description": "The requested byte range.",
        "headers": {"Content-Range": {"schema": {"type": "string"}, "description": "`bytes first-last/size`"}},
    },
    416: {
        **error_responses(416)[416],
        "description": "The range selects no byte of the file.",
        "headers": {"Content-Range": {"schema": {"type": "string"}, "description": "`bytes */size`"}},
    },
}


@router.get("/{job_id}/results/{name}", responses={**_RANGE_RESPONSES, **error_responses(401, 404, 409, 503)})
async def get_result(
    job_id: str,
    name: str,
    request: Request,
    reconciler: ReconcilerDep,
    storage: StorageDep,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
    token: Annotated[str | None, Query(description="A signed link's token, instead of the key.")] = None,
    _: Documented = None,
) -> Response:
    """Stream one result file (with HTTP Range support, so video players can seek).

    With the key in the header, or through the signed link of the job view's `results`."""
    caller = await caller_of_link(request, job_id, f"result:{name}")
    return await run_in_threadpool(_result_response, reconciler, storage, job_id, name, caller, range_header)


def _result_response(
    reconciler: Reconciler, storage: Storage, job_id: str, name: str, caller: Caller, range_header: str | None
) -> Response:
    record = load_job(reconciler, job_id, caller)
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
        obj = storage.open_stream(result_key(job_id, result), byte_range=s3_range(range_header))
    except ClientError as exc:
        raise ServiceError(ErrorCode.RESULT_NOT_FOUND, "The result file is missing from storage.") from exc
    except ServiceError as exc:
        if exc.code is ErrorCode.RANGE_NOT_SATISFIABLE:
            return _unsatisfiable(range_header, int(exc.details["size"]))
        raise
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


@router.post("/{job_id}/cancel", response_model=JobView, responses=error_responses(401, 404, 409, 503))
def cancel_job(job_id: str, caller: CallerDep, reconciler: ReconcilerDep, viewer: ViewerDep) -> JobView:
    """A queued job never runs; a running one stops at its next progress report (within seconds)."""
    record = load_job(reconciler, job_id, caller)
    if record.status.is_final or not reconciler.store.cancel(job_id, actor=caller.label):
        record = load_job(reconciler, job_id, caller)
        raise ServiceError(
            ErrorCode.JOB_ALREADY_FINISHED,
            f"The job has already finished ({record.status.value}); there is nothing to cancel.",
            {"status": record.status.value},
        )
    if record.status is JobStatus.QUEUED:
        # The worker also skips jobs that are no longer queued; this shows it canceled in RQ at once.
        mark_rq_canceled(reconciler.queue, job_id)
        # A running job's worker queues its comparison when it stops; a queued one never runs, so here.
        reconciler.queue_follower(record)
    return viewer(load_job(reconciler, job_id, caller))


@router.delete("/{job_id}", status_code=204, responses=error_responses(401, 404, 409, 503))
def delete_job(job_id: str, caller: CallerDep, reconciler: ReconcilerDep) -> Response:
    """Remove the job record and every file of the job, unfinished uploads included.
    A running job must be canceled first."""
    record = load_job(reconciler, job_id, caller)
    if record.status is JobStatus.RUNNING:
        raise ServiceError(
            ErrorCode.JOB_RUNNING,
            "The job is running; cancel it first, then delete it.",
            {"status": record.status.value, "cancel_url": f"/jobs/{job_id}/cancel"},
        )
    if record.status is JobStatus.QUEUED and not reconciler.store.cancel(
        job_id, only_if=(JobStatus.QUEUED,), actor=caller.label
    ):
        raise ServiceError(ErrorCode.JOB_RUNNING, "The job just started; cancel it first, then delete it.")
    reconciler.purge(job_id, actor=caller.label)
    reconciler.queue_follower(record)  # it fails at once (INPUT_UNAVAILABLE) instead of waiting for a sweep
    return Response(status_code=204)
