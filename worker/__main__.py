"""Start a worker: `python -m worker` (or supervised: `python -m worker.supervisor`).

Models load once here, before the first job, and jobs run in this same
process (an RQ SimpleWorker: no fork per job, so loaded models stay loaded
and a CUDA context is never forked). A missing model stops the worker at
start with a clear message (exit code 2) instead of failing jobs later.

The process also keeps its presence key fresh (shared/presence.py), runs the
reconciler every few seconds (shared/reconcile.py), runs at a lower CPU
priority than the API, and outlives Redis outages: when RQ's loop gives up
on a lost connection, it waits for Redis and starts the loop again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from types import FrameType

import redis
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import as_text, now, utcformat

from shared.errors import ServiceError
from shared.jobs import JobStatus
from shared.logs import configure_logging, job_context
from shared.presence import WorkerPresence
from shared.queue import mark_rq_canceled
from shared.settings import Settings, get_settings
from worker import scratch
from worker.context import WorkerContext, build_context, get_context, set_context
from worker.priority import lower_priority

log = logging.getLogger("worker")

EXIT_CONFIG_ERROR = 2  # a supervisor does not restart a worker that exits with this


class AnalysisWorker(SimpleWorker):
    """RQ's SimpleWorker, plus: a run that ended canceled shows as canceled in RQ (never finished),
    a requested stop is remembered (to tell it from a loop that ended on a lost connection), and
    the RQ registration of a killed predecessor with this name does not keep this one out."""

    stop_requested = False

    def execute_job(self, job: Job, queue: Queue) -> None:
        with job_context(job.id):  # RQ's own lines about the job carry its id too
            super().execute_job(job, queue)

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry, execution: Execution
    ) -> None:
        # A canceled run returns normally (the task stops at its next check). Marking it
        # canceled here, while the worker is still busy, means RQ never shows it `finished`,
        # not even for a moment; and a stop signal now only sets RQ's flag, where after the
        # run it would raise StopRequested into whatever was running.
        if self._ended_canceled(job.id):
            mark_rq_canceled(queue, job.id)
            with self.connection.pipeline() as pipeline:
                self.cleanup_execution(job, pipeline=pipeline, execution=execution)
                pipeline.execute()
            return
        super().handle_job_success(job, queue, started_job_registry, execution)

    @staticmethod
    def _ended_canceled(job_id: str) -> bool:
        try:
            record = get_context().store.get(job_id)
        except redis.RedisError:
            return False  # the reconciler corrects RQ's view once Redis answers again
        return record is not None and record.status is JobStatus.CANCELED

    def register_birth(self) -> None:
        self._release_registration_of_dead_namesake()
        super().register_birth()

    def _release_registration_of_dead_namesake(self) -> None:
        """RQ keeps a worker's key for up to worker_ttl + 60 s after it is killed (SIGKILL, OOM)
        and refuses a new worker of that name meanwhile. When the holder ran on this host and
        its process is gone (or has our pid: a restarted container), its registration is dead."""
        hostname, pid, death = (
            as_text(v) if v else None for v in self.connection.hmget(self.key, ["hostname", "pid", "death"])
        )
        if hostname != self.hostname or death is not None or not pid or process_alive(int(pid)):
            return  # no holder, a dead one already marked, or a live one: RQ decides
        log.warning(
            "worker %s: the previous worker of this name (pid %s) is gone; taking over its name", self.name, pid
        )
        self.connection.hset(self.key, "death", utcformat(now()))

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True
        super().request_stop(signum, frame)


def process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a former process with our pid: this one replaced it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, under another user
    return True


def wait_for_redis(client: redis.Redis, stop: threading.Event) -> None:
    delay = 0.5
    while not stop.is_set():
        try:
            client.ping()
            return
        except redis.RedisError as exc:
            log.warning("Redis unavailable (%s); retrying in %.0f s", exc, delay)
            stop.wait(delay)
            delay = min(delay * 2, 10.0)


def reconcile_forever(context: WorkerContext, stop: threading.Event) -> None:
    interval = context.settings.reconcile_interval_seconds
    while not stop.wait(interval):
        try:
            report = context.reconciler.sweep_if_due(lock_seconds=interval * 0.9)
            if report:
                log.info("reconciler: %s", report)
        except Exception as exc:  # Redis or storage down: the next round tries again
            log.warning("reconciler round skipped: %s", exc)


def main() -> int:
    settings = get_settings()
    configure_logging(settings)
    lower_priority(settings.worker_nice)
    try:
        context = build_context(settings)
    except ServiceError as exc:
        log.error("%s: %s", exc.code.value, exc.message)
        return EXIT_CONFIG_ERROR
    return serve(context, settings)


def serve(context: WorkerContext, settings: Settings) -> int:
    stop = threading.Event()
    scratch.remove_orphans(settings.work_dir)
    wait_for_redis(context.redis, stop)
    presence = WorkerPresence(
        context.redis, context.store.keys, context.worker_name, settings.worker_presence_ttl_seconds
    )
    presence.start()
    context.presence = presence
    set_context(context)
    try:
        report = context.reconciler.sweep()
        if report:
            log.warning("at start, the reconciler found: %s", report)
    except Exception as exc:
        log.warning("reconciler at start skipped: %s", exc)
    threading.Thread(target=reconcile_forever, args=(context, stop), name="reconciler", daemon=True).start()
    log.info("worker %s ready: mode=%s queue=%s", context.worker_name, settings.mode, settings.queue_name)

    session = 0
    try:
        while True:
            # A new RQ name per session: a registration lost with the connection cannot clash.
            name = context.worker_name if session == 0 else f"{context.worker_name}.{session}"
            worker: AnalysisWorker | None = None
            try:
                # RQ talks to Redis from the constructor on: all of it is inside the outage guard.
                worker = AnalysisWorker([context.queue], connection=context.redis, serializer=JSONSerializer, name=name)
                worker.work(with_scheduler=False)
            except redis.RedisError as exc:
                log.warning("Redis lost (%s)", exc)
            if worker is not None and worker.stop_requested:
                return 0
            log.warning("the RQ loop ended without a stop request (Redis lost?); reconnecting")
            session += 1
            wait_for_redis(context.redis, stop)
            with contextlib.suppress(redis.RedisError):
                presence.refresh()
            time.sleep(0.5)
    finally:
        stop.set()
        presence.stop()


if __name__ == "__main__":
    sys.exit(main())
