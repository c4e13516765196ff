"""`GET /` (who and what is running) and `GET /health` (per dependency)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from backend.deps import RedisDep, SettingsDep, StorageDep
from shared import __version__
from shared.errors import ServiceError

router = APIRouter(tags=["service"])


@router.get("/")
async def service_info(settings: SettingsDep) -> dict[str, Any]:
    return {"service": "dance-analysis", "version": __version__, "mode": settings.mode, "docs": "/docs", "web": "/app/"}


@router.get("/health", responses={503: {"description": "A dependency is down"}})
async def health(redis_client: RedisDep, storage: StorageDep) -> JSONResponse:
    checks: dict[str, str] = {}
    details: dict[str, str] = {}
    try:
        await run_in_threadpool(redis_client.ping)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"], details["redis"] = "error", str(exc)
    try:
        await run_in_threadpool(storage.ping)
        checks["storage"] = "ok"
    except ServiceError as exc:
        checks["storage"], details["storage"] = "error", str(exc.details.get("reason", exc.message))
    healthy = all(state == "ok" for state in checks.values())
    body: dict[str, Any] = {"status": "ok" if healthy else "error", "dependencies": checks}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=200 if healthy else 503)
