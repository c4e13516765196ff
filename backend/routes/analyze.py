"""`POST /analyze`: stream the upload into storage, record the job, enqueue it.

Order matters for "nothing is lost": the object is complete before the job
record exists, and the record exists before the job is enqueued. When a later
step fails, the earlier ones are undone, so there is never an object without
a job nor a job without an object.
"""

from __future__ import annotations

import contextlib
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from backend.auth import Caller, CallerDep
from backend.deps import LimitsDep, QueueDep, SettingsDep, StorageDep, StoreDep
from backend.errors import error_responses
from backend.limits import renewing
from backend.routes.compare import comparable, comparison_record, create_and_enqueue
from backend.upload import StreamingUpload
from backend.views import JobAccepted, api_base
from shared.errors import ErrorCode, ServiceError
from shared.jobs import JOB_ID_PATTERN, Comparison, JobRecord, JobStore, Mirror, is_job_id, new_job_id
from shared.keys import upload_key
from shared.metrics import Metrics
from shared.profiles import Profile
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
                        "reference_job_id": {
                            "type": "string",
                            "pattern": JOB_ID_PATTERN,
                            "description": "One of your succeeded analyses (e.g. the teacher's): a comparison job "
                            "with this upload as the attempt runs once the analysis ends.",
                        },
                        "mirror": {
                            "type": "string",
                            "enum": [m.value for m in Mirror],
                            "default": Mirror.AUTO.value,
                            "description": "The comparison's mirror option (see POST /compare).",
                        },
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
    responses=error_responses(401, 404, 409, 413, 415, 422, 429, 503),
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

    With `reference_job_id`, a comparison job (see `POST /compare`) with this upload as the attempt is
    created too (`comparison_job_id` in the answer) and runs once the analysis ends.

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
    job_id = new_job_id()
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
        follower = await run_in_threadpool(_follower, store, settings, caller, record, result.fields)
        if follower is not None:
            record.comparison_job_id = follower.job_id
        await run_in_threadpool(create_and_enqueue, store, queue, settings, record, caller.label, follower)
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
    if follower is not None:
        accepted.comparison_job_id = follower.job_id
        accepted.comparison_status_url = f"{base}/jobs/{follower.job_id}"
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202, headers={"Location": accepted.status_url})


def _follower(
    store: JobStore, settings: Settings, caller: Caller, record: JobRecord, fields: dict[str, str]
) -> JobRecord | None:
    """The comparison asked for with the form field `reference_job_id` (and `mirror`), not yet recorded."""
    reference_id = fields.get("reference_job_id", "").strip()
    if not reference_id:
        return None
    if not is_job_id(reference_id):
        raise ServiceError(
            ErrorCode.VALIDATION_ERROR,
            "reference_job_id must be the id of one of your analysis jobs (32 hex digits).",
            {"field": "reference_job_id"},
        )
    asked = fields.get("mirror") or Mirror.AUTO.value
    if asked not in {m.value for m in Mirror}:
        raise ServiceError(
            ErrorCode.VALIDATION_ERROR,
            f"Unknown mirror option {asked!r}; choose one of: {', '.join(m.value for m in Mirror)}.",
            {"field": "mirror", "allowed": [m.value for m in Mirror]},
        )
    reference = comparable(store, caller, reference_id, "reference")
    comparison = Comparison(reference_job_id=reference_id, attempt_job_id=record.job_id, mirror=Mirror(asked))
    return comparison_record(settings, caller, comparison, reference, record.filename)
