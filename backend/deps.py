"""Dependencies as `Annotated` aliases, so routes read like plain signatures.

Clients are created once per app (in `create_app`) and kept on `app.state`;
tests build the app with their own settings, or swap a dependency with
`app.dependency_overrides`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import redis
from fastapi import Depends, Request
from rq import Queue

from backend.limits import KeyLimits
from shared.jobs import AsyncJobReader, JobStore
from shared.reconcile import Reconciler
from shared.settings import Settings
from shared.storage import Storage


def from_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency returning `app.state.<name>`, the object `create_app` made once.

    Async on purpose: FastAPI runs a plain `def` dependency in its threadpool, so
    every poll would wait for a free thread behind slow sync routes (a hanging
    storage call held them all for 15 s in a test); this one costs no thread hop.
    """

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    dependency.__name__ = f"get_{name}"
    return dependency


SettingsDep = Annotated[Settings, Depends(from_state("settings"))]
StoreDep = Annotated[JobStore, Depends(from_state("store"))]
ReaderDep = Annotated[AsyncJobReader, Depends(from_state("reader"))]
StorageDep = Annotated[Storage, Depends(from_state("storage"))]
QueueDep = Annotated[Queue, Depends(from_state("queue"))]
RedisDep = Annotated[redis.Redis, Depends(from_state("redis"))]
ReconcilerDep = Annotated[Reconciler, Depends(from_state("reconciler"))]
LimitsDep = Annotated[KeyLimits, Depends(from_state("limits"))]
