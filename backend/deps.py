"""Dependencies as `Annotated` aliases, so routes read like plain signatures.

Clients are created once per app (in `create_app`) and kept on `app.state`;
tests swap them with `app.dependency_overrides` or by building the app with
their own settings.
"""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import Depends, Request
from rq import Queue

from shared.jobs import AsyncJobReader, JobStore
from shared.settings import Settings
from shared.storage import Storage


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def get_reader(request: Request) -> AsyncJobReader:
    reader: AsyncJobReader = request.app.state.reader
    return reader


def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


def get_queue(request: Request) -> Queue:
    queue: Queue = request.app.state.queue
    return queue


def get_redis(request: Request) -> redis.Redis:
    client: redis.Redis = request.app.state.redis
    return client


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
ReaderDep = Annotated[AsyncJobReader, Depends(get_reader)]
StorageDep = Annotated[Storage, Depends(get_storage)]
QueueDep = Annotated[Queue, Depends(get_queue)]
RedisDep = Annotated[redis.Redis, Depends(get_redis)]
