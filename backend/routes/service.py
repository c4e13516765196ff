"""`GET /` (who and what is running) and `GET /health` (per dependency)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from backend.auth import CallerDep
from backend.deps import RedisDep, SettingsDep, StorageDep
from backend.errors import error_responses
from shared import __version__
from shared.errors import ServiceError, hide_addresses

router = APIRouter(tags=["service"])


@router.get("/")
async def service_info(settings: SettingsDep) -> dict[str, Any]:
    """What runs here; `auth` says whether calls need an API key (`keys`) or not (`open`)."""
    return {
        "service": "dance-analysis",
        "version": __version__,
        "mode": settings.mode,
        "auth": settings.api_auth,
        "docs": "/docs",
        "web": "/app/",
    }


class Me(BaseModel):
    """The key a request was made with (none with API_AUTH=open)."""

    auth: Literal["keys", "open"]
    key_id: str
    name: str
    admin: bool


@router.get("/me", response_model=Me, responses=error_responses(401, 503))
async def whoami(caller: CallerDep, settings: SettingsDep) -> Me:
    """Check a key: who it is and whether it sees every job (admin)."""
    return Me(auth=settings.api_auth, key_id=caller.key_id, name=caller.name, admin=caller.admin)


class HealthReport(BaseModel):
    """`ok`/`error` per dependency; `details` says why for those in error."""

    status: Literal["ok", "error"]
    dependencies: dict[str, Literal["ok", "error"]]
    details: dict[str, str] = Field(default_factory=dict)


@router.get(
    "/health",
    response_model=HealthReport,
    responses={503: {"model": HealthReport, "description": "A dependency is down"}},
)
async def health(redis_client: RedisDep, storage: StorageDep) -> JSONResponse:
    checks: dict[str, str] = {}
    details: dict[str, str] = {}
    try:
        await run_in_threadpool(redis_client.ping)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"], details["redis"] = "error", hide_addresses(str(exc))
    try:
        await run_in_threadpool(storage.ping)
        checks["storage"] = "ok"
    except ServiceError as exc:
        checks["storage"], details["storage"] = "error", hide_addresses(str(exc.details.get("reason", exc.message)))
    healthy = all(state == "ok" for state in checks.values())
    body: dict[str, Any] = {"status": "ok" if healthy else "error", "dependencies": checks}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=200 if healthy else 503)
