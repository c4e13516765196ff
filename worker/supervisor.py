"""Keep one worker running: `python -m worker.supervisor [-- COMMAND...]`.

Starts the worker (`python -m worker` unless a command is given) as a child
process and starts it again whenever it exits on its own (a crash, SIGKILL,
out of memory), after a backoff that doubles from 1 s to 60 s and resets once
a worker has run for a minute. When a worker dies, its job is released at
once (shared/reconcile.py `worker_gone`): run again from the stored upload,
instead of waiting for the worker's presence key to expire.

Signals: SIGTERM or SIGINT is passed on to the worker (a warm shutdown: it
finishes its job) and the supervisor exits when the worker does; a second
one is passed on too (RQ's cold shutdown: the job goes back to the queue).
A worker that exits with code 2 (its models or settings are wrong) is not
restarted: the supervisor exits with 2 so the operator sees why.

Used by `./manage.sh local`, the native macOS worker of `./manage.sh compose`
and the tests; in Compose the container runtime restarts the worker itself.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("worker.supervisor")

EXIT_CONFIG_ERROR = 2
STABLE_SECONDS = 60.0  # a worker that ran this long resets the backoff


class Supervisor:
    def __init__(
        self,
        command: list[str],
        *,
        on_death: Callable[[str], None] | None = None,
        first_backoff: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        self.command = command
        self.on_death = on_death
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.base_name = os.environ.get("WORKER_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        self.starts = 0
        self.child: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        first = not self._stopping.is_set()
        self._stopping.set()
        child = self.child
        if child is not None and child.poll() is None:
            log.info("%s: %s the worker (pid %d)", signal.Signals(signum).name,
                     "passing it on to" if first else "again: cold shutdown of", child.pid)  # fmt: skip
            child.send_signal(signum)

    def _spawn(self) -> tuple[subprocess.Popen[bytes], str]:
        self.starts += 1
        name = f"{self.base_name}-w{self.starts}"
        env = {**os.environ, "WORKER_NAME": name}
        child = subprocess.Popen(self.command, env=env)
        log.info("started worker %s (pid %d)", name, child.pid)
        return child, name

    def run(self) -> int:
        backoff = self.first_backoff
        while not self._stopping.is_set():
            self.child, name = self._spawn()
            started = time.monotonic()
            code = self.child.wait()
            if self._stopping.is_set():
                log.info("worker %s stopped (exit code %s)", name, code)
                return 0
            if code == EXIT_CONFIG_ERROR:
                log.error("worker %s cannot start (exit code 2: see its messages above); not restarting", name)
                return EXIT_CONFIG_ERROR
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            if time.monotonic() - started >= STABLE_SECONDS:
                backoff = self.first_backoff
            log.warning("worker %s %s; starting a new one in %.0f s", name, how, backoff)
            if self.on_death is not None:
                try:
                    self.on_death(name)
                except Exception as exc:  # Redis down: the reconciler does it once the presence key expires
                    log.warning("could not release the jobs of worker %s now: %s", name, exc)
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff)
        return 0


def release_jobs_of(name: str) -> None:
    """Release the job of a dead worker through the reconciler (imports nothing of the analysis)."""
    import redis

    from shared.jobs import JobStore
    from shared.keys import RedisKeys
    from shared.queue import get_queue
    from shared.reconcile import Reconciler
    from shared.settings import get_settings
    from shared.storage import Storage

    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=10)
    store = JobStore(client, RedisKeys(settings.key_prefix))
    reconciler = Reconciler(store, get_queue(settings, client), Storage(settings), settings)
    released = reconciler.worker_gone(name)
    if released:
        log.warning("released the job(s) of worker %s: %s", name, ", ".join(released))


def main(argv: list[str] | None = None) -> int:
    from shared.logs import configure_logging

    configure_logging()
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    command = args or [sys.executable, "-m", "worker"]
    # The supervisor leads the worker's session (manage.sh starts it with setsid): lowering its own
    # priority here also lowers the session's scheduling group, which the worker alone cannot do.
    from shared.settings import get_settings
    from worker.priority import lower_priority

    lower_priority(get_settings().worker_nice)
    supervisor = Supervisor(command, on_death=release_jobs_of)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
