"""A worker's sign of life: one Redis key with a short TTL, refreshed by a thread.

    {prefix}:worker:{name} = {"pid": ..., "host": ..., "job": job id or ""}   (expires after TTL)
    {prefix}:workers       = sorted set of names, scored by their last refresh   (to list them)

The key names the job the worker is running, so the reconciler can tell a
running job whose worker is gone (key expired: SIGKILL, power loss, lost
network) or moved on (key names another job) from one still in progress,
within one TTL (15 s by default) instead of the job heartbeat's 120 s.
The refresher also survives Redis blips: it keeps trying, and the key is
back within one period of Redis returning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

from shared.keys import RedisKeys

log = logging.getLogger(__name__)

_INDEX_KEEP_SECONDS = 24 * 3600


class WorkerPresence:
    def __init__(self, client: redis.Redis, keys: RedisKeys, name: str, ttl_seconds: int) -> None:
        self.redis = client
        self.key = keys.worker(name)
        self.index = keys.workers()
        self.name = name
        self.ttl = ttl_seconds
        self.job = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh_loop, name="worker-presence", daemon=True)

    def start(self) -> None:
        self.refresh()
        self._thread.start()

    def hold(self, job_id: str) -> None:
        """Say this worker runs `job_id` (before the job's record says so)."""
        self.job = job_id
        self.refresh()

    def release(self) -> None:
        self.job = ""
        self._try_refresh()

    def refresh(self) -> None:
        value = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "job": self.job})
        moment = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.key, value, ex=self.ttl)
        # The index lists workers without a SCAN; names silent for a day are dropped from it.
        pipe.zadd(self.index, {self.name: moment})
        pipe.zremrangebyscore(self.index, "-inf", moment - _INDEX_KEEP_SECONDS)
        pipe.execute()

    def stop(self) -> None:
        """A clean exit: the key goes at once, so nobody waits a TTL to learn it."""
        self._stop.set()
        self._thread.join(timeout=2)
        with contextlib.suppress(redis.RedisError):
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(self.key)
            pipe.zrem(self.index, self.name)
            pipe.execute()

    def _try_refresh(self) -> bool:
        try:
            self.refresh()
        except redis.RedisError as exc:
            log.warning("worker presence not refreshed (Redis: %s); retrying", exc)
            return False
        return True

    def _refresh_loop(self) -> None:
        # A third of the TTL: two refreshes can be missed before the key expires.
        while not self._stop.wait(max(self.ttl / 3, 0.5)):
            self._try_refresh()


def _parse(raw: bytes | str | None) -> dict[str, Any] | None:
    """A presence key's value; None when it expired (the worker is gone) or is not ours."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def read_presence(client: redis.Redis, keys: RedisKeys, name: str) -> dict[str, object] | None:
    """The live worker's presence, None when it is gone."""
    return _parse(client.get(keys.worker(name))) if name else None


@dataclass(frozen=True)
class LiveWorker:
    name: str
    job: str  # the job it runs, "" when idle
    pid: int
    host: str
    seen_seconds_ago: float  # since its presence was last refreshed


def live_workers(client: redis.Redis, keys: RedisKeys) -> list[LiveWorker]:
    """Every worker whose presence key is alive, by name (two round trips, no SCAN)."""
    raw: list[tuple[bytes | str, float]] = client.zrange(keys.workers(), 0, -1, withscores=True)  # type: ignore[assignment]
    if not raw:
        return []
    names = [name.decode() if isinstance(name, bytes) else name for name, _ in raw]
    values: list[bytes | str | None] = client.mget([keys.worker(name) for name in names])
    now = time.time()
    found = []
    for (name, (_, seen)), value in zip(zip(names, raw, strict=True), values, strict=True):
        presence = _parse(value)
        if presence is None:
            continue
        found.append(
            LiveWorker(
                name=name,
                job=str(presence.get("job") or ""),
                pid=int(presence.get("pid") or 0),
                host=str(presence.get("host") or ""),
                seen_seconds_ago=max(now - float(seen), 0.0),
            )
        )
    return found
