"""Resources a worker process creates once and every job reuses: settings,
Redis, storage, the job store and the analyzer (with its models loaded)."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from shared.jobs import JobStore
from shared.keys import RedisKeys
from shared.settings import Settings, get_settings
from shared.storage import Storage
from worker.analysis import Analyzer, load_analyzer


@dataclass
class WorkerContext:
    settings: Settings
    redis: redis.Redis
    store: JobStore
    storage: Storage
    analyzer: Analyzer


_context: WorkerContext | None = None


def build_context(settings: Settings | None = None, analyzer: Analyzer | None = None) -> WorkerContext:
    settings = settings or get_settings()
    client = redis.Redis.from_url(settings.redis_url)
    return WorkerContext(
        settings=settings,
        redis=client,
        store=JobStore(client, RedisKeys(settings.key_prefix)),
        storage=Storage(settings),
        analyzer=analyzer if analyzer is not None else load_analyzer(settings),
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
