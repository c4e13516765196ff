"""What clients see of a job: the public JSON shape of `GET /jobs/{id}`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel, Field

from backend.auth import Caller, CallerDep, LinkSigner
from shared.jobs import JobKind, JobRecord, JobStage, JobStatus
from shared.keys import result_key
from shared.profiles import Profile
from shared.settings import Settings
from shared.storage import Storage


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class JobView(BaseModel):
    job_id: str
    kind: JobKind = Field(description="`analysis` of an uploaded video, or `comparison` of two analyses.")
    status: JobStatus
    stage: JobStage
    progress: float = Field(ge=0, le=1)
    frames_done: int
    frames_total: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    profile: Profile
    mode: str
    filename: str
    size_bytes: int
    error: ErrorInfo | None
    results: dict[str, str] = Field(description="Result name → URL, present once the job succeeded.")
    video: dict[str, Any] | None = Field(None, description="What the probe found: size, rotation, fps, duration...")
    attempts: int = Field(description="Runs started so far; a run whose worker was lost is retried.")
    max_attempts: int = Field(description="Runs allowed before a job whose worker keeps being lost fails.")
    retry_reason: str = Field(description="Why the job was queued again, when it was; empty otherwise.")
    comparison: dict[str, Any] | None = Field(
        None, description="A comparison's inputs: reference_job_id, attempt_job_id, mirror, the track ids."
    )
    comparison_job_id: str | None = Field(
        None, description="An analysis uploaded with a reference: the comparison job that follows it."
    )


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    status_url: str
    comparison_job_id: str | None = Field(None, description="With `reference_job_id`: the comparison that follows.")
    comparison_status_url: str | None = None


class JobPage(BaseModel):
    jobs: list[JobView]
    total: int
    offset: int
    limit: int


def _time(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value else None


def api_base(settings: Settings, request_base: str) -> str:
    return settings.public_base_url or request_base.rstrip("/")


# (job id, scope) → the `token` query value of a signed link to it (backend/auth.py), or "" for none.
LinkToken = Callable[[str, str], str]


def result_url(storage: Storage, base: str, job_id: str, name: str, token: LinkToken | None = None) -> str:
    """A URL the client can reach: presigned for the public storage endpoint, else through the
    API, signed for one file when the API needs keys (a `<video src>` cannot send a header)."""
    if storage.can_presign:
        return storage.presigned_url(result_key(job_id, name), filename=f"{job_id}-{name}")
    url = f"{base}/jobs/{job_id}/results/{name}"
    signed = token(job_id, f"result:{name}") if token else ""
    return f"{url}?token={signed}" if signed else url


def job_view(record: JobRecord, storage: Storage, base: str, token: LinkToken | None = None) -> JobView:
    results = {}
    if record.status is JobStatus.SUCCEEDED:
        results = {name: result_url(storage, base, record.job_id, name, token) for name in record.results}
    return JobView(
        job_id=record.job_id,
        kind=record.kind,
        status=record.status,
        stage=record.stage,
        progress=min(max(record.progress, 0.0), 1.0),
        frames_done=record.frames_done,
        frames_total=record.frames_total,
        created_at=_time(record.created_at) or datetime.now(tz=UTC),
        started_at=_time(record.started_at),
        finished_at=_time(record.finished_at),
        profile=record.profile,
        mode=record.mode,
        filename=record.filename,
        size_bytes=record.size_bytes,
        error=ErrorInfo(**record.error) if record.error else None,
        results=results,
        video=record.video,
        attempts=record.attempts,
        max_attempts=record.max_attempts,
        retry_reason=record.retry_reason,
        comparison=record.comparison,
        comparison_job_id=record.comparison_job_id or None,
    )


class JobViewer:
    """Shows records to one request's caller: links on the request's base URL, signed for that caller."""

    def __init__(self, storage: Storage, base: str, token: LinkToken | None, key_id: str = "") -> None:
        self.storage = storage
        self.base = base
        self.token = token
        # Whose views look alike: links are on one base URL, and signed links are one key's.
        self.scope = (base, key_id if token and not storage.can_presign else "")

    def __call__(self, record: JobRecord) -> JobView:
        return job_view(record, self.storage, self.base, self.token)


def viewer_for(request: Request, caller: Caller) -> JobViewer:
    settings: Settings = request.app.state.settings
    token: LinkToken | None = None
    if settings.api_auth == "keys":
        signer: LinkSigner = request.app.state.links

        def token(job_id: str, scope: str) -> str:
            return signer.sign(job_id, scope, caller.key_id, settings.presign_expiry_seconds)[0]

    return JobViewer(request.app.state.storage, api_base(settings, str(request.base_url)), token, caller.key_id)


async def _viewer(request: Request, caller: CallerDep) -> JobViewer:
    return viewer_for(request, caller)


ViewerDep = Annotated[JobViewer, Depends(_viewer)]
