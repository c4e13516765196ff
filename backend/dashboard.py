"""The RQ dashboard behind a login, a same-origin rule and a Host check: `python -m backend.dashboard`.

rq-dashboard's own CLI runs Flask's development server, with no login unless given one, and its
buttons (empty a queue, delete or requeue jobs) are plain POSTs. A page on any other site can send
such a POST from the operator's browser, which adds the basic-auth login it has cached. So this
module serves rq-dashboard 0.9.0's Flask app on uvicorn (through a2wsgi, both already in
requirements-api.txt) with three checks in front of every route, static files included:

1. Host: the Host header's name must be one of `Settings.allowed_host_list`, or a loopback name
   (a DNS-rebinding page's requests carry its own name, never a loopback one; the container
   healthcheck uses 127.0.0.1). Else 400 HOST_NOT_ALLOWED.
2. Login: HTTP basic auth with RQ_DASHBOARD_USERNAME / RQ_DASHBOARD_PASSWORD, compared in constant
   time. Else 401 UNAUTHORIZED. It refuses to start (exit 2) without a password, or with a
   placeholder or well-known default one (`shared.settings.is_placeholder_secret`), in any
   environment: it holds no other secret, so Compose gives it none and runs it without
   ENVIRONMENT=production, whose check covers the API's secrets.
3. Same origin: a request that changes state (any method but GET/HEAD/OPTIONS, and any request
   to `/requeue/<queue>`, which rq-dashboard also serves on GET) must carry an Origin header, or
   without one a Referer, naming this dashboard's own scheme://host:port. Else 403
   CROSS_SITE_REQUEST. The dashboard's own jQuery `$.post` calls carry their page's Origin.
   Behind a TLS-terminating proxy, uvicorn takes the scheme from X-Forwarded-Proto only from the
   addresses in FORWARDED_ALLOW_IPS (default: loopback); set it to the proxy's address.

Its pages may not be framed by another site (no clickjacking of its buttons). Jobs are read with
RQ's JSONSerializer, as shared/queue.py enqueues them. Errors use the project's one envelope.
"""

from __future__ import annotations

import argparse
import hmac
import logging
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, request
from pydantic import ValidationError

from shared.errors import ErrorCode, ServiceError
from shared.settings import Settings, host_name, is_placeholder_secret

log = logging.getLogger("backend.dashboard")

REALM = "rq-dashboard"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# rq-dashboard's one route that changes state on GET too (it requeues every failed job).
STATE_CHANGING_ENDPOINTS = frozenset({"rq_dashboard.requeue_all"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_PORTS = {"http": 80, "https": 443}


class StartupRefused(Exception):
    """The dashboard cannot start with these settings; the message says why, in one line."""


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an absolute http(s) URL; None for anything else ("null" too)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.rstrip("."), port or DEFAULT_PORTS[scheme]


def _refusal(code: ErrorCode, message: str, headers: dict[str, str] | None = None) -> Response:
    error = ServiceError(code, message)
    response = jsonify({"error": error.to_dict()})
    response.status_code = error.http_status
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response


def _guard(settings: Settings) -> Callable[[], Response | None]:
    allowed = set(settings.allowed_host_list) | LOOPBACK_NAMES
    any_host = "*" in settings.allowed_host_list
    username = settings.rq_dashboard_username.encode()
    password = settings.rq_dashboard_password.encode()

    def guard() -> Response | None:
        host = request.headers.get("Host", "")
        if not any_host and host_name(host) not in allowed:
            log.warning("dashboard: refused Host %r", host[:100])
            return _refusal(ErrorCode.HOST_NOT_ALLOWED, "This host name is not one the dashboard answers to.")

        auth = request.authorization
        given_user = (auth.username or "").encode() if auth and auth.type == "basic" else b""
        given_password = (auth.password or "").encode() if auth and auth.type == "basic" else b""
        # Both compared every time, in constant time: no early exit tells which one was wrong.
        user_ok = hmac.compare_digest(given_user, username)
        password_ok = hmac.compare_digest(given_password, password)
        if not (user_ok and password_ok):
            return _refusal(
                ErrorCode.UNAUTHORIZED,
                "Log in with RQ_DASHBOARD_USERNAME and RQ_DASHBOARD_PASSWORD.",
                {"WWW-Authenticate": f'Basic realm="{REALM}"'},
            )

        if request.method in SAFE_METHODS and request.endpoint not in STATE_CHANGING_ENDPOINTS:
            return None
        claimed = request.headers.get("Origin")
        if claimed is None:
            claimed = request.headers.get("Referer")
        own = _origin(f"{request.scheme}://{host}")
        if claimed is None or own is None or _origin(claimed) != own:
            log.warning("dashboard: refused %s %s from origin %r", request.method, request.path, (claimed or "")[:100])
            return _refusal(
                ErrorCode.CROSS_SITE_REQUEST,
                "Changes are accepted only from the dashboard's own pages (Origin or Referer must be this site).",
            )
        # The audit line of every change made here: who, what (no credentials, no query string).
        log.info("dashboard: %s %s by %s", request.method, request.path, settings.rq_dashboard_username)
        return None

    return guard


def _no_framing(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def create_app(settings: Settings) -> Flask:
    """rq-dashboard's Flask app, built as its CLI builds it, with the checks in front of it."""
    from rq.serializers import JSONSerializer
    from rq_dashboard import web
    from rq_dashboard.cli import make_flask_app

    check_password(settings)
    # No username: rq-dashboard adds no login of its own (ours runs first, on every route).
    app = make_flask_app(None, None, None, "")
    app.config["RQ_DASHBOARD_REDIS_URL"] = settings.redis_url
    web.config.serializer = JSONSerializer
    web.setup_rq_connection(app)
    # App-level hooks run before the blueprint's own (which already talks to Redis).
    app.before_request(_guard(settings))
    app.after_request(_no_framing)
    return app


def check_password(settings: Settings) -> None:
    password = settings.rq_dashboard_password
    if not password:
        raise StartupRefused("RQ_DASHBOARD_PASSWORD is empty: the dashboard never runs without a login")
    if is_placeholder_secret(password):
        raise StartupRefused("RQ_DASHBOARD_PASSWORD is a CHANGE-ME placeholder or a well-known default")


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            where = ".".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{where}: {message}" if where else message)
        raise StartupRefused("; ".join(problems)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9181, help="port to bind (default 9181)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        app = create_app(settings)
    except StartupRefused as exc:
        print(f"rq-dashboard: {exc}", file=sys.stderr)
        return 2

    import uvicorn
    from a2wsgi import WSGIMiddleware

    from shared.logs import configure_logging

    configure_logging(settings)
    log.info("rq-dashboard on http://%s:%s, login %r", args.host, args.port, settings.rq_dashboard_username)
    # log_config=None: uvicorn's lines go through the project's handler (shared/logs.py).
    uvicorn.run(WSGIMiddleware(app), host=args.host, port=args.port, log_config=None)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
