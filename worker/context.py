"""Resources a worker process creates once and every job reuses: settings,
Redis, storage, the job store, the queue, the reconciler, the analyzer
(with its models loaded) and the beat trackers (Essentia imported and configured)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import redis
from rq import Queue

from shared.jobs import JobStore
from shared.keys import RedisKeys
from shared.open_uploads import OpenUploads
from shared.presence import WorkerPresence
from shared.queue import get_queue
from shared.reconcile import Reconciler
from shared.settings import Settings, get_settings, redis_retry_options
from shared.storage import Storage
from worker.analysis import Analyzer, load_analyzer
from worker.pipeline import beats


@dataclass
class WorkerContext:
    settings: Settings
    redis: redis.Redis
    store: JobStore
    storage: Storage
    queue: Queue
    reconciler: Reconciler
    analyzer: Analyzer
    # The name this process's jobs record as their worker; its presence key says it is alive.
    worker_name: str
    presence: WorkerPresence | None = None


_context: WorkerContext | None = None


def default_worker_name() -> str:
    # A supervisor names each worker it starts, so it can release the jobs of one that died.
    return os.environ.get("WORKER_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def build_context(
    settings: Settings | None = None, analyzer: Analyzer | None = None, worker_name: str | None = None
) -> WorkerContext:
    settings = settings or get_settings()
    client = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=5, health_check_interval=30, **redis_retry_options()
    )
    keys = RedisKeys(settings.key_prefix)
    store = JobStore(client, keys)
    storage = Storage(settings)
    storage.open_uploads = OpenUploads(client, keys)
    queue = get_queue(settings, client)
    # Every analysis listens for beats: Essentia's import and set-up (about 1 s of CPU) belong to
    # the worker's start, as the models' loading does, not to its first job.
    beats.preload()
    return WorkerContext(
        settings=settings,
        redis=client,
        store=store,
        storage=storage,
        queue=queue,
        reconciler=Reconciler(store, queue, storage, settings),
        analyzer=analyzer if analyzer is not None else load_analyzer(settings),
        worker_name=worker_name or default_worker_name(),
    )


def set_context(context: WorkerContext) -> None:
    global _context
    _context = context


def get_context() -> WorkerContext:
    """The process's context; built on first use when no worker start-up hook did it."""
    global _context
    if _context is None:
        _context = build_context()
    return _context
