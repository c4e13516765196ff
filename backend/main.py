"""The FastAPI application: `uvicorn backend.main:create_app --factory`."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from backend.auth import LinkSigner
from backend.changes import ChangeFeed
from backend.errors import install_error_handlers
from backend.guards import RequestGuard
from backend.limits import KeyLimits
from backend.routes import analyze, compare, events, jobs, metrics, service
from backend.status import StatusViews
from shared import __version__
from shared.apikeys import AsyncApiKeyReader
from shared.jobs import AsyncJobReader, JobStore
from shared.keys import RedisKeys
from shared.logs import configure_logging, job_context
from shared.open_uploads import OpenUploads
from shared.queue import get_queue
from shared.reconcile import Reconciler
from shared.settings import Settings, async_redis_retry_options, get_settings, redis_retry_options
from shared.storage import Storage

log = logging.getLogger(__name__)

# Redis connections of one API process's event loop; more concurrent commands queue for one.
ASYNC_REDIS_CONNECTIONS = 32


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    if settings.api_auth == "open":
        log.warning(
            "API_AUTH=open: anyone who reaches this API can read, download, cancel and delete every job. "
            "For frontend work on a loopback-bound stack only; production refuses it."
        )
    app = FastAPI(
        lifespan=_lifespan,
        title="Dance analysis API",
        version=__version__,
        description="Upload a dance video; get every dancer's tracked pose, an annotated video and metrics.",
    )
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
        **redis_retry_options(),
    )
    app.state.settings = settings
    app.state.redis = client
    keys = RedisKeys(settings.key_prefix)
    app.state.store = JobStore(client, keys)
    # Requests wait for one of a few connections: a plain pool refuses the 101st concurrent
    # command ("Too many connections", a 503 for the client) when a thousand pollers come at once.
    async_pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=ASYNC_REDIS_CONNECTIONS,
        timeout=5,
        socket_connect_timeout=2,
        socket_timeout=5,
        **async_redis_retry_options(),
    )
    async_client = redis.asyncio.Redis(connection_pool=async_pool)
    app.state.reader = AsyncJobReader(async_client, keys)
    app.state.api_keys = AsyncApiKeyReader(async_client, keys)
    app.state.links = LinkSigner(settings.secret_key, needed=settings.api_auth == "keys")
    app.state.limits = KeyLimits(app.state.store, settings)
    app.state.storage = Storage(settings)
    app.state.storage.open_uploads = OpenUploads(client, keys)
    app.state.queue = get_queue(settings, client)
    app.state.reconciler = Reconciler(app.state.store, app.state.queue, app.state.storage, settings)
    app.state.changes = ChangeFeed(settings, keys)
    app.state.statuses = StatusViews(app.state.changes, app.state.reader, app.state.reconciler)

    install_error_handlers(app)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["Location", "Content-Range", "Content-Length", "Retry-After", "WWW-Authenticate", "ETag"],
        )
    app.include_router(service.router)
    app.include_router(analyze.router)
    app.include_router(compare.router)
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(metrics.router)
    app.add_middleware(JobLogContext)
    # Outermost: a request to a host not ours, or a change sent from another site, goes no further.
    app.add_middleware(RequestGuard, settings=settings)
    # The web page (plain HTML/JS, no build step): upload, live progress, results viewer.
    app.mount("/app", StaticFiles(directory=Path(__file__).parent / "static", html=True), name="web")
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Listening for job changes from the start, so the first polls are answered from memory too.
    app.state.changes.ensure_running()
    yield
    await app.state.changes.stop()


_JOB_PATH = re.compile(r"^/jobs/([0-9a-f]{32})(?:/|$)")


class JobLogContext:
    """Every line logged while a request for one job is handled carries its id, uvicorn's access
    line included (uvicorn logs it from the request's own task). Plain ASGI: no extra task."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        found = _JOB_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        with job_context(found.group(1)):
            await self.app(scope, receive, send)
