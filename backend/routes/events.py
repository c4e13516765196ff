"""`GET /jobs/{job_id}/events`: a job's status pushed as Server-Sent Events.

Each (unnamed, i.e. `message`) event's `data` is the job view, the same JSON as `GET /jobs/{job_id}`.
The current state is sent on connect, then again on every change (status,
stage, progress); the stream ends after a final status (succeeded, failed,
canceled). A comment line goes out every ~15 s so proxies keep the stream open.

Every visible job update PUBLISHes on the job's Redis channel (see `shared.jobs`),
and this process hears them all on one subscription (backend/changes.py), so a
stream sleeps until its job changes instead of polling, and a thousand streams
cost no Redis connection each. A change is only a wake-up call: the view is read
again (backend/status.py), and only one that differs from the last one sent
becomes an event. The record is also read afresh every few seconds in case a
message was missed, which is also when a job whose worker died is released
(`Reconciler.check`).

A job deleted while watched gets a last `deleted` event (`{"job_id": ...}`).
Browsers' `EventSource` reconnects whenever a stream ends: close it on a final
status. Polling `GET /jobs/{job_id}` works as before.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from backend.auth import EVENTS_TOKEN_SECONDS, CallerDep, Documented, LinkSigner, caller_of_link
from backend.changes import ChangeFeed
from backend.deps import ReaderDep, ReconcilerDep, SettingsDep
from backend.errors import error_responses
from backend.status import StatusView, StatusViews, read_job
from backend.views import api_base, viewer_for
from shared.errors import ErrorCode, ServiceError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/jobs", tags=["jobs"])

# Module-level so tests can shorten them.
HEARTBEAT_SECONDS = 15.0  # a comment line when nothing else was sent for this long
RECHECK_SECONDS = 5.0  # re-read the record this often even without a message
TICK_SECONDS = 1.0  # longest wait for a change before checking the client is still there
RETRY_MS = 3000  # how long an EventSource waits before reconnecting


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,  # so the document does not also claim application/json
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "A stream of events, each carrying the job view (as `GET /jobs/{job_id}`).",
        },
        **error_responses(401, 404, 503),
    },
)
async def job_events(
    job_id: str,
    request: Request,
    token: Annotated[
        str | None, Query(description="From POST /jobs/{job_id}/events/token, instead of the key.")
    ] = None,
    _: Documented = None,
) -> StreamingResponse:
    """Push the job's status: now, on every change, and a last time when it ends.

    With the key in the header (fetch-based clients), or, for a browser's `EventSource`,
    which cannot send one, the short-lived signed link from `POST /jobs/{job_id}/events/token`."""
    caller = await caller_of_link(request, job_id, "events")
    statuses: StatusViews = request.app.state.statuses
    viewer = viewer_for(request, caller)
    # Unknown job (or Redis down): a normal JSON error envelope, before any stream starts.
    await statuses.get(job_id, caller, viewer)

    async def current(fresh: bool) -> StatusView | None:
        try:
            return await statuses.get(job_id, caller, viewer, fresh=fresh)
        except ServiceError as exc:
            if exc.code is ErrorCode.JOB_NOT_FOUND:
                return None
            raise

    return StreamingResponse(
        _stream(request, job_id, current, statuses.feed),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"},
    )


async def _stream(
    request: Request,
    job_id: str,
    current: Callable[[bool], Awaitable[StatusView | None]],
    feed: ChangeFeed,
) -> AsyncIterator[str]:
    # Watch before the first read, so no change between the two is lost.
    with feed.watch(job_id) as changed:
        yield f"retry: {RETRY_MS}\n\n"
        last: bytes | None = None
        last_sent = last_check = time.monotonic()
        fresh = False
        while True:
            view = await current(fresh)
            last_check = time.monotonic()
            if view is None:  # deleted while we watched
                yield f"event: deleted\ndata: {json.dumps({'job_id': job_id})}\n\n"
                return
            if view.body != last:
                yield f"data: {view.body.decode()}\n\n"  # an unnamed event: `EventSource.onmessage` gets it
                last, last_sent = view.body, time.monotonic()
            if view.final:
                return
            # Wait for a change, a recheck, a heartbeat or the client leaving, whichever comes first.
            while True:
                if await request.is_disconnected():
                    return
                moment = time.monotonic()
                if moment - last_sent >= HEARTBEAT_SECONDS:
                    yield ": keep-alive\n\n"
                    last_sent = moment
                if moment - last_check >= RECHECK_SECONDS:
                    fresh = True  # past any cached view: this is for a change nobody announced
                    break
                wait = min(
                    TICK_SECONDS, RECHECK_SECONDS - (moment - last_check), HEARTBEAT_SECONDS - (moment - last_sent)
                )
                if await feed.wait(changed, wait):
                    fresh = False
                    break


class EventsLink(BaseModel):
    events_url: str
    token: str
    expires_at: int


@router.post("/{job_id}/events/token", response_model=EventsLink, responses=error_responses(401, 404, 503))
async def events_token(
    job_id: str,
    request: Request,
    caller: CallerDep,
    reader: ReaderDep,
    reconciler: ReconcilerDep,
    settings: SettingsDep,
) -> EventsLink:
    """A link to the job's event stream for `EventSource`, valid for ten minutes (to connect; an
    open stream is not cut). The key stays out of the URL, and so out of every access log."""
    await read_job(reader, reconciler, job_id, caller)
    signer: LinkSigner = request.app.state.links
    token, expires = signer.sign(job_id, "events", caller.key_id, EVENTS_TOKEN_SECONDS)
    url = f"{api_base(settings, str(request.base_url))}/jobs/{job_id}/events?token={token}"
    return EventsLink(events_url=url, token=token, expires_at=expires)
