"""Which jobs just changed: one Redis subscription per API process, shared by every request.

The job store PUBLISHes on a job's channel each time its record visibly changes
or is deleted (shared/jobs.py). This process listens to all of those channels
on one connection (PSUBSCRIBE), and from that:

- the cached status views (backend/status.py) drop a job's entries when it
  changes, so an unchanged job is answered without reading Redis;
- long polls (`GET /jobs/{id}?wait=`) and event streams sleep until their job
  changes, instead of each polling Redis or holding a connection of its own.

A cache is only as good as its invalidations: while the subscription is down
(Redis restarting, a lost connection) `live` is False, readers go to Redis
every time, waiters fall back to re-reading every `DEGRADED_POLL_SECONDS`,
and on reconnecting everything cached before is dropped (`epoch` moves on).

The subscription starts with the app (its lifespan), or else with the first
request that needs it, on that request's event loop (tests run uvicorn with
`lifespan` off).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator

import redis.asyncio as aioredis

from shared.keys import RedisKeys
from shared.settings import Settings

log = logging.getLogger(__name__)

# Module-level so tests can shorten them.
DEGRADED_POLL_SECONDS = 1.0  # how often a waiter re-reads while the subscription is down
PING_SECONDS = 5.0  # a PING this often on the subscription...
SILENCE_SECONDS = 15.0  # ...and a reconnect when nothing at all came back for this long
RETRY_MAX_SECONDS = 10.0


class ChangeFeed:
    """This process's view of job changes: a generation per job, and wake-ups for waiters."""

    def __init__(self, settings: Settings, keys: RedisKeys) -> None:
        self.settings = settings
        self.keys = keys
        self.live = False
        # Moves on whenever changes may have been missed (start, reconnect): what was learnt
        # before is void.
        self.epoch = 0
        self._generations: dict[str, int] = {}
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._listeners: list[Callable[[str | None], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- what readers use -------------------------------------------------------------------
    def ensure_running(self) -> None:
        """Start listening on the running event loop, unless already listening there."""
        loop = asyncio.get_running_loop()
        if self._task is not None and self._loop is loop and not self._task.done():
            return
        self._loop = loop
        self._task = loop.create_task(self._listen(), name="job-change-feed")

    async def stop(self) -> None:
        """Stop listening (the app's shutdown): nothing is cached or heard after this."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def generation(self, job_id: str) -> tuple[int, int]:
        """Changes seen so far of one job: equal before and after a read means none came between."""
        return self.epoch, self._generations.get(job_id, 0)

    def on_change(self, listener: Callable[[str | None], None]) -> None:
        """Call `listener(job_id)` on each change, `listener(None)` when changes may have been missed."""
        self._listeners.append(listener)

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set when the job changes (or the feed drops). Register before reading the
        job, so a change between the read and the wait is not missed."""
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            waiting = self._waiters.get(job_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiters[job_id]

    async def wait(self, changed: asyncio.Event, timeout: float) -> bool:
        """Until `changed` is set or `timeout` s pass; at most DEGRADED_POLL_SECONDS while not
        live, when it returns True as if the job changed (read it again: nobody would say)."""
        if not self.live:
            timeout = min(timeout, DEGRADED_POLL_SECONDS)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), max(timeout, 0.0))
        heard = changed.is_set() or not self.live
        changed.clear()
        return heard

    @property
    def waiting(self) -> int:
        return sum(len(events) for events in self._waiters.values())

    # --- the subscription -------------------------------------------------------------------
    def _changed(self, job_id: str) -> None:
        self._generations[job_id] = self._generations.get(job_id, 0) + 1
        if len(self._generations) > 100_000:  # bounded; a new epoch voids what readers hold
            self._void()
        for event in self._waiters.get(job_id, ()):
            event.set()
        for listener in self._listeners:
            listener(job_id)

    def _void(self) -> None:
        self.epoch += 1
        self._generations.clear()
        for events in self._waiters.values():
            for event in events:
                event.set()  # re-read: a change may have gone by
        for listener in self._listeners:
            listener(None)

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            client = aioredis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=2)
            pubsub = client.pubsub(ignore_subscribe_messages=False)
            try:
                await pubsub.psubscribe(self.keys.every_job_events())
                await self._pump(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis gone or restarting: readers go to Redis meanwhile
                if self.live:
                    log.warning("job change feed lost (%s); reading Redis on every request until it is back", exc)
            finally:
                self.live = False
                self._void()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _pump(self, pubsub: aioredis.client.PubSub) -> None:
        heard = pinged = time.monotonic()
        while True:
            message = await pubsub.get_message(timeout=1.0)
            now = time.monotonic()
            if message is not None:
                heard = now
                kind = message["type"]
                if kind == "psubscribe" and not self.live:
                    self._void()  # whatever was cached before this subscription may be stale
                    self.live = True
                elif kind == "pmessage":
                    channel = message["channel"]
                    self._changed(
                        self.keys.job_id_of_events(channel.decode() if isinstance(channel, bytes) else channel)
                    )
            if now - pinged >= PING_SECONDS:
                await pubsub.ping()  # its pong counts as heard: a silent socket means a dead link
                pinged = now
            if now - heard > SILENCE_SECONDS:
                raise ConnectionError(f"no answer on the subscription for {SILENCE_SECONDS:.0f} s")
