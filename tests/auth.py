"""API keys for tests: settings that need keys, and keys made in the test's own Redis prefix."""

from __future__ import annotations

import redis

from shared.apikeys import ApiKeyStore
from shared.keys import RedisKeys
from shared.settings import Settings


def keyed(settings: Settings) -> Settings:
    """The same settings with API keys required."""
    return settings.model_copy(update={"api_auth": "keys", "secret_key": "test-secret-" + "x" * 32})


def make_key(settings: Settings, name: str = "test", *, admin: bool = False) -> str:
    """A new key in the Redis (and key prefix) of `settings`."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        return ApiKeyStore(client, RedisKeys(settings.key_prefix)).create(name, admin=admin)[1]
    finally:
        client.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
