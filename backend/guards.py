"""Checks on every request before any route runs: the Host it was sent to, and where a change came from.

Host: a page on another site can make a browser talk to a loopback-bound API by
pointing its own domain at 127.0.0.1 (DNS rebinding); the browser then sends that
domain as Host. Only the names in `ALLOWED_HOSTS` (and the host of `PUBLIC_BASE_URL`)
are answered, so such a page gets 400 HOST_NOT_ALLOWED, and no link the API builds
from the request ever carries a forged host.

Origin: a state-changing request (POST, DELETE, ...) whose `Origin` is another site
is refused with 403 CROSS_SITE_REQUEST unless that site is in `CORS_ORIGINS`. With API
keys a browser cannot send a foreign site's request with the key anyway (the header
needs a CORS preflight); with `API_AUTH=open` this check is what stops a page from
emptying a developer's stack. Requests without `Origin` (curl, servers) pass.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from backend.errors import envelope
from shared.errors import HTTP_STATUS, ErrorCode
from shared.settings import Settings, host_name

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class RequestGuard:
    """Pure ASGI middleware (no task or thread per request): Host first, then Origin."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.hosts = settings.allowed_host_list
        self.cors = settings.cors_origin_list
        public = urlsplit(settings.public_base_url)
        self.public_origin = f"{public.scheme}://{public.netloc}".lower() if public.netloc else ""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if self.hosts != ["*"] and host_name(host) not in self.hosts:
            shown = host[:100]
            message = f"This API does not answer to the host {shown!r}; the operator lists its names in ALLOWED_HOSTS."
            await _refuse(ErrorCode.HOST_NOT_ALLOWED, message, {"host": shown}, scope, receive, send)
            return
        origin = headers.get("origin")
        if scope.get("method", "GET") not in _SAFE_METHODS and origin and not self._same_site(origin, host):
            message = "A request from another site may not change anything here."
            await _refuse(ErrorCode.CROSS_SITE_REQUEST, message, {"origin": origin[:100]}, scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _same_site(self, origin: str, host: str) -> bool:
        origin = origin.lower()
        if "*" in self.cors or origin in (o.lower() for o in self.cors):
            return True
        if self.public_origin and origin == self.public_origin:
            return True
        # The page's own origin. The scheme is not compared: behind a TLS proxy the API sees http.
        return urlsplit(origin).netloc == host.lower()


async def _refuse(code: ErrorCode, message: str, details: dict[str, str], scope: Any, receive: Any, send: Any) -> None:
    response = JSONResponse(envelope(code, message, details), status_code=HTTP_STATUS[code])
    await response(scope, receive, send)
