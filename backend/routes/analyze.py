"""`POST /analyze`: stream the upload into storage, record the job, enqueue it.

Order matters for "nothing is lost": the object is complete before the job
record exists, and the record exists before the job is enqueued. When a later
step fails, the earlier ones are undone, so there is never an object without
a job nor a job without an object.
"""

from __future__ import annotations

import contextlib
import logging
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from rq import Queue
from starlette.concurrency import run_in_threadpool

from backend.auth import CallerDep
from backend.deps import LimitsDep, QueueDep, SettingsDep, StorageDep, StoreDep
from backend.errors import error_responses
from backend.limits import renewing
from backend.upload import StreamingUpload
from backend.views import JobAccepted, api_base
from shared.errors import ErrorCode, ServiceError
from shared.jobs import JobRecord, JobStore
from shared.keys import upload_key
from shared.metrics import Metrics
from shared.profiles import Profile
from shared.queue import enqueue_analysis
from shared.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(tags=["analysis"])

# Multipart framing around the file: boundaries, headers, the profile field.
_ENVELOPE_SLACK = 64 * 1024

_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "The video (MP4, MOV, WebM...)."},
                        "profile": {"type": "string", "enum": Profile.names(), "default": Profile.FAST.value},
                    },
                }
            }
        },
    }
}


@router.post(
    "/analyze",
    status_code=202,
    response_model=JobAccepted,
    openapi_extra=_OPENAPI_BODY,
    responses=error_responses(401, 413, 415, 422, 429, 503),
)
async def analyze(
    request: Request,
    caller: CallerDep,
    settings: SettingsDep,
    storage: StorageDep,
    store: StoreDep,
    queue: QueueDep,
    limits: LimitsDep,
) -> JSONResponse:
    """Upload a video (multipart field `file`) for analysis; the job belongs to the caller's key.

    429 RATE_LIMITED (with Retry-After) when the key has too many jobs waiting or running,
    or too many uploads arriving at once."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes + _ENVELOPE_SLACK:
        raise ServiceError(
            ErrorCode.UPLOAD_TOO_LARGE,
            f"The upload is larger than the limit of {settings.max_upload_mb} MB.",
            {"max_bytes": settings.max_upload_bytes, "content_length": int(declared)},
        )

    # Fail fast: no point streaming gigabytes in when the job could not be queued.
    try:
        await run_in_threadpool(store.redis.ping)
    except Exception as exc:
        raise ServiceError(
            ErrorCode.QUEUE_UNAVAILABLE, "The job queue (Redis) is unavailable.", {"reason": str(exc)}
        ) from exc

    await run_in_threadpool(limits.check_queue, caller)
    job_id = uuid.uuid4().hex
    upload = StreamingUpload(storage, settings.max_upload_bytes, lambda ext: upload_key(job_id, ext))
    async with limits.upload_slot(caller) as claim:
        result = await upload.consume(request.headers.get("content-type", ""), renewing(request.stream(), claim))
    if result.file is None:
        raise ServiceError(ErrorCode.MISSING_FILE, "Attach the video in the form field 'file'.")
    source = result.file
    await run_in_threadpool(Metrics(store.redis, store.keys).uploaded, source.size)  # never raises

    try:
        asked = result.fields.get("profile") or settings.default_profile.value
        if asked not in Profile.names():
            raise ServiceError(
                ErrorCode.INVALID_PROFILE,
                f"Unknown profile {asked!r}; choose one of: {', '.join(Profile.names())}.",
                {"profile": asked, "allowed": Profile.names()},
            )
        profile = Profile(asked)
        record = JobRecord(
            job_id=job_id,
            profile=profile,
            mode=settings.mode,
            source_key=source.key,
            filename=source.filename,
            size_bytes=source.size,
            max_attempts=settings.max_attempts,
            owner=caller.key_id,
        )
        await run_in_threadpool(_record_and_enqueue, store, queue, settings, record, caller.label)
    except BaseException:
        # No object without a job.
        with contextlib.suppress(ServiceError):
            await run_in_threadpool(storage.delete, source.key)
        raise

    log.info(
        "job %s queued: %s (%d bytes, profile %s)",
        job_id, source.filename, source.size, profile.value, extra={"job_id": job_id},
    )  # fmt: skip
    base = api_base(settings, str(request.base_url))
    accepted = JobAccepted(job_id=job_id, status=record.status, status_url=f"{base}/jobs/{job_id}")
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202, headers={"Location": accepted.status_url})


def _record_and_enqueue(store: JobStore, queue: Queue, settings: Settings, record: JobRecord, actor: str) -> None:
    try:
        store.create(record, actor=actor)
    except Exception as exc:
        raise ServiceError(
            ErrorCode.QUEUE_UNAVAILABLE, "The job queue (Redis) is unavailable.", {"reason": str(exc)}
        ) from exc
    try:
        enqueue_analysis(queue, settings, record.job_id)
    except Exception as exc:
        # No job record without a queued job.
        with contextlib.suppress(Exception):
            store.delete(record.job_id, actor=actor)
        raise ServiceError(ErrorCode.QUEUE_UNAVAILABLE, "The job could not be queued.", {"reason": str(exc)}) from exc
