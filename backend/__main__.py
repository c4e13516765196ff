"""Run the API: `python -m backend [--host H] [--port P]`, one uvicorn process per core.

One Python process serves one core at most, and status polls are CPU, not I/O;
so the API runs as API_PROCESSES processes (0, the default: as many as the CPU
cores this process may use, a container's CPU limit included) behind uvicorn's
own process manager, which also starts a process again when one dies. The
processes share nothing but Redis and the object store: each keeps its own
cache of job views, kept true by Redis change events (backend/changes.py).

The settings are checked here, once, before any process starts: a refused
setting stops the API with the reason instead of N identical tracebacks.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import sys
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from shared.settings import Settings

# Seconds a stopping API gives its open requests (uploads, long polls, event streams) to end,
# inside the 10 s `docker stop` waits before it kills.
GRACEFUL_SHUTDOWN_SECONDS = 8


def available_cores() -> int:
    """The CPU cores this process may use: its affinity, capped by a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit to honour
    return max(cores, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--processes", type=int, default=None, help="overrides API_PROCESSES")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"the API cannot start: {exc}", file=sys.stderr)
        return 2
    processes = args.processes or settings.api_processes or available_cores()
    if processes > 1 and not settings.secret_key:
        # Links one process signs must open in another: one key for all (this run only).
        os.environ["SECRET_KEY"] = secrets.token_hex(32)
    print(f"starting the API: {processes} process(es) on {args.host}:{args.port}", file=sys.stderr, flush=True)
    uvicorn.run(
        "backend.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=processes,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
