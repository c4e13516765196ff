"""API keys: made by the operator, stored hashed in Redis, checked on every call to the API.

    python -m shared.apikeys create NAME [--admin] [--json]   # prints the key, once
    python -m shared.apikeys list [--json]
    python -m shared.apikeys revoke KEY_ID
    python -m shared.apikeys ensure-file PATH [--name NAME]   # the local stack's admin key

A key reads `dak_<key id>_<secret>`. The key id (12 hex digits, not secret) finds the
record and names the key in listings, audit lines and job records; the secret is 32
random bytes. Only the SHA-256 of the whole key is stored: with 256 random bits there
is nothing for a slow password hash (bcrypt, argon2) to protect, and it would cost
every request its time, which is why GitHub and Stripe tokens are checked the same way.
Digests are compared in constant time, and a key id that does not exist costs the
same comparison, so response times say nothing about which ids exist.

A job belongs to the key that created it (`JobRecord.owner` holds its key id); an
admin key sees and acts on every job. Revoking a key is immediate: the record stays
(with `revoked_at`) so its jobs keep an owner that listings can name.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
import redis.asyncio

from shared.keys import RedisKeys

KEY_PATTERN = re.compile(r"^dak_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
# Compared against when the key id is unknown, so a miss costs what a hit costs.
_DUMMY_DIGEST = hashlib.sha256(b"no such key").hexdigest()
MAX_NAME_CHARS = 100


@dataclass(frozen=True)
class ApiKey:
    """One key's record; never holds the key itself."""

    key_id: str
    name: str
    admin: bool
    created_at: float
    digest: str
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def public(self) -> dict[str, Any]:
        """What listings show: everything but the digest."""
        shown = asdict(self)
        del shown["digest"]
        return shown

    @classmethod
    def from_json(cls, text: str | bytes) -> ApiKey:
        return cls(**json.loads(text))


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(key: str) -> str | None:
    """The key id inside a well-formed key, else None."""
    match = KEY_PATTERN.match(key)
    return match.group(1) if match else None


def matches(key: str, record: ApiKey | None) -> bool:
    """Whether `key` is the active key of `record`, in constant time (also when there is no record)."""
    expected = record.digest if record is not None else _DUMMY_DIGEST
    same = hmac.compare_digest(digest_of(key), expected)
    return same and record is not None and record.active


def new_key() -> tuple[str, str]:
    """(key id, key) of a fresh key."""
    key_id = secrets.token_hex(6)
    return key_id, f"dak_{key_id}_{secrets.token_urlsafe(32)}"


class ApiKeyStore:
    """The keys, one Redis hash `{prefix}:api-keys` of key id → JSON record."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self.redis = client
        self.keys = keys

    def create(self, name: str, *, admin: bool = False) -> tuple[ApiKey, str]:
        """A new key: its record and the key itself, which is shown this once and never stored."""
        name = name.strip()
        if not name or len(name) > MAX_NAME_CHARS or any(ord(c) < 32 for c in name):
            raise ValueError(f"a key's name is 1-{MAX_NAME_CHARS} printable characters")
        while True:
            key_id, key = new_key()
            record = ApiKey(key_id=key_id, name=name, admin=admin, created_at=time.time(), digest=digest_of(key))
            if self.redis.hsetnx(self.keys.api_keys(), key_id, json.dumps(asdict(record))):
                return record, key

    def get(self, key_id: str) -> ApiKey | None:
        raw: Any = self.redis.hget(self.keys.api_keys(), key_id)
        return ApiKey.from_json(raw) if raw else None

    def all(self) -> list[ApiKey]:
        raw: Any = self.redis.hgetall(self.keys.api_keys())
        return sorted((ApiKey.from_json(v) for v in raw.values()), key=lambda k: k.created_at)

    def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke the key (at once, for every API process); None when there is no such key."""
        record = self.get(key_id)
        if record is None:
            return None
        if record.active:
            record = ApiKey(**{**asdict(record), "revoked_at": time.time()})
            self.redis.hset(self.keys.api_keys(), key_id, json.dumps(asdict(record)))
        return record

    def verify(self, key: str) -> ApiKey | None:
        key_id = key_id_of(key)
        record = self.get(key_id) if key_id else None
        return record if matches(key, record) else None


class AsyncApiKeyReader:
    """`ApiKeyStore.verify` on redis.asyncio, for the API's hot path (no thread hop per request)."""

    def __init__(self, client: redis.asyncio.Redis, keys: RedisKeys) -> None:
        self.redis = client
        self.keys = keys

    async def get(self, key_id: str) -> ApiKey | None:
        raw = await self.redis.hget(self.keys.api_keys(), key_id)
        return ApiKey.from_json(raw) if raw else None

    async def verify(self, key: str) -> ApiKey | None:
        key_id = key_id_of(key)
        record = await self.get(key_id) if key_id else None
        return record if matches(key, record) else None


# --- the command line (manage.sh keys ...) --------------------------------------------------


def _store() -> ApiKeyStore:
    from shared.settings import get_settings, redis_retry_options

    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, **redis_retry_options())
    return ApiKeyStore(client, RedisKeys(settings.key_prefix))


def _when(moment: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(moment)) if moment else "-"


def _ensure_file(store: ApiKeyStore, path: Path, name: str) -> str:
    """The admin key kept in `path`: reused while Redis still knows it, else a new one written there."""
    if path.exists():
        key = path.read_text().strip()
        if store.verify(key) is not None:
            return "kept"
    _, key = store.create(name, admin=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(key + "\n")
    os.chmod(path, 0o600)
    return "created"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.apikeys", description="Manage the API's keys.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key and print it (it is shown this once)")
    create.add_argument("name", help="who or what uses the key, e.g. 'studio-app'")
    create.add_argument("--admin", action="store_true", help="sees and acts on every job")
    create.add_argument("--json", action="store_true")
    listing = commands.add_parser("list", help="every key (never the keys themselves)")
    listing.add_argument("--json", action="store_true")
    revoke = commands.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    ensure = commands.add_parser("ensure-file", help="keep a working admin key in PATH (mode 600)")
    ensure.add_argument("path", type=Path)
    ensure.add_argument("--name", default="local-admin")
    args = parser.parse_args(argv)

    store = _store()
    try:
        if args.command == "create":
            try:
                record, key = store.create(args.name, admin=args.admin)
            except ValueError as exc:
                parser.error(str(exc))
            if args.json:
                print(json.dumps({"key": key, **record.public()}))
            else:
                print(
                    f"created key {record.key_id} ({record.name}{', admin' if record.admin else ''})", file=sys.stderr
                )
                print("the key (shown this once; send it as 'Authorization: Bearer KEY'):", file=sys.stderr)
                print(key)
        elif args.command == "list":
            records = store.all()
            if args.json:
                print(json.dumps([r.public() for r in records], indent=2))
            else:
                print(f"{'KEY ID':<13} {'NAME':<24} {'ADMIN':<6} {'CREATED':<17} REVOKED")
                for r in records:
                    admin = "yes" if r.admin else "no"
                    print(
                        f"{r.key_id:<13} {r.name[:24]:<24} {admin:<6} {_when(r.created_at):<17} {_when(r.revoked_at)}"
                    )
        elif args.command == "revoke":
            revoked = store.revoke(args.key_id)
            if revoked is None:
                print(f"error: there is no key {args.key_id!r} (see: list)", file=sys.stderr)
                return 1
            print(f"revoked key {revoked.key_id} ({revoked.name})")
        elif args.command == "ensure-file":
            print(_ensure_file(store, args.path, args.name))
    except redis.exceptions.ConnectionError as exc:
        print(f"error: Redis is unavailable: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
