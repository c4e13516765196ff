#!/usr/bin/env python3
"""Container health checks, installed in the images as `healthcheck`.

    healthcheck http URL [--auth-env USER_VAR:PASSWORD_VAR]
        Healthy when URL answers 2xx. With --auth-env, logs in with HTTP basic
        auth taken from those environment variables (rq-dashboard).
    healthcheck worker
        Healthy when an RQ worker started in this container (same hostname) is
        registered in Redis (REDIS_URL). RQ keeps the registration alive while
        a job runs, even a long one on a worker that does not fork.

Exit 0: healthy; 1: unhealthy (the reason on stderr). Standard library only,
except `redis`/`rq` for the worker check, which the worker image has anyway.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import sys
import urllib.error
import urllib.request


def check_http(url: str, auth_env: str | None, timeout: float) -> str | None:
    request = urllib.request.Request(url)
    if auth_env:
        user_var, _, password_var = auth_env.partition(":")
        token = f"{os.environ.get(user_var, '')}:{os.environ.get(password_var, '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(token.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if 200 <= response.status < 300:
                return None
            return f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} unreachable: {exc}"


def check_worker(timeout: float) -> str | None:
    from redis import Redis
    from rq import Worker

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    connection = Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    hostname = socket.gethostname()
    try:
        workers = Worker.all(connection=connection)
    except Exception as exc:  # any Redis failure means: not healthy
        return f"redis unreachable at {url}: {exc}"
    if any(worker.hostname == hostname for worker in workers):
        return None
    return f"no RQ worker registered from host {hostname}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="healthcheck")
    parser.add_argument("--timeout", type=float, default=4.0)
    sub = parser.add_subparsers(dest="check", required=True)
    http = sub.add_parser("http")
    http.add_argument("url")
    http.add_argument("--auth-env", default=None, metavar="USER_VAR:PASSWORD_VAR")
    sub.add_parser("worker")
    args = parser.parse_args(argv)

    problem = check_http(args.url, args.auth_env, args.timeout) if args.check == "http" else check_worker(args.timeout)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
