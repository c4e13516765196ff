"""Who is calling: the API key on each request, and the signed links that stand in for it.

Every route but `/`, `/health`, the docs and the web page's files takes a `CallerDep`:
the key in `Authorization: Bearer <key>` (shared/apikeys.py), or, with `API_AUTH=open`,
an anonymous caller who may do anything (frontend work on a loopback-bound stack only;
production refuses it). A job belongs to the key that created it: for any other key
(admins aside) it does not exist, so reads, results, events, cancel and delete of
another key's job answer 404 exactly as for an unknown id.

A browser cannot put a header on `<video src>` or on `EventSource`, so two kinds of
request also accept a signed link instead (`?token=`): a result served through the API
and a job's event stream. A token names one job, one purpose (one result file, or the
events) and the key it was issued to, and expires: minutes for events, the presigned
URLs' lifetime for results. It is checked like a key (the key must still be active),
so revoking a key also ends its links. The signing secret is `SECRET_KEY`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import secrets
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.apikeys import AsyncApiKeyReader
from shared.errors import ErrorCode, ServiceError
from shared.jobs import JobRecord
from shared.settings import Settings

log = logging.getLogger(__name__)

# How long a token for a job's event stream stays valid: long enough to connect. The stream
# itself is not cut when it expires; a reconnect after that asks for a new one.
EVENTS_TOKEN_SECONDS = 600
# Expiry times are rounded up to this, so a job view (with its result links) stays the same
# between two polls a few seconds apart instead of changing with every request.
_EXPIRY_STEP_SECONDS = 60


@dataclass(frozen=True)
class Caller:
    """The key behind a request (or the anonymous caller of an open API)."""

    key_id: str
    name: str
    admin: bool

    @property
    def label(self) -> str:
        """How audit lines name the caller: the key id and its name, never the key."""
        return f"key:{self.key_id} ({self.name})" if self.key_id else "anonymous (API_AUTH=open)"

    @property
    def owner_filter(self) -> str | None:
        """Whose jobs the caller sees: None for everyone's (admin, open API), else its own key id."""
        return None if self.admin else self.key_id

    def owns(self, record: JobRecord) -> bool:
        return self.may_see(record.owner)

    def may_see(self, owner: str) -> bool:
        """Whether a job of `owner` (a key id, "" for none) is the caller's to see and act on."""
        return self.admin or owner == self.key_id


OPEN_CALLER = Caller(key_id="", name="anonymous", admin=True)


def unauthorized(message: str) -> ServiceError:
    return ServiceError(ErrorCode.UNAUTHORIZED, message)


def bearer_key(request: Request) -> str | None:
    """The key in `Authorization: Bearer <key>`, or None when there is no such header."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise unauthorized("Send the API key as 'Authorization: Bearer <key>'.")
    return value.strip()


async def caller_of_key(reader: AsyncApiKeyReader, key: str) -> Caller:
    record = await reader.verify(key)
    if record is None:
        raise unauthorized("The API key is not valid, or it was revoked.")
    return Caller(key_id=record.key_id, name=record.name, admin=record.admin)


# Declares the scheme in the OpenAPI document (the docs page's "Authorize" button); the header
# itself is read by `bearer_key`, which also answers a malformed one with the error envelope.
BEARER_SCHEME = HTTPBearer(
    auto_error=False, bearerFormat="dak_<key id>_<secret>", description="An API key made by the operator."
)
Documented = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER_SCHEME)]


async def authenticate(request: Request, _: Documented = None) -> Caller:
    """The caller of this request, or 401 (UNAUTHORIZED)."""
    settings: Settings = request.app.state.settings
    if settings.api_auth == "open":
        return OPEN_CALLER
    key = bearer_key(request)
    if key is None:
        raise unauthorized("This API needs a key: send 'Authorization: Bearer <key>' (the operator makes keys).")
    return await caller_of_key(request.app.state.api_keys, key)


CallerDep = Annotated[Caller, Depends(authenticate)]


# --- signed links ------------------------------------------------------------------------------


class LinkSigner:
    """Makes and checks the `?token=` of links to one job's events or result files."""

    def __init__(self, secret: str, *, needed: bool = True) -> None:
        if not secret and needed:
            # Outside production only (Settings refuses it there): links then work with this
            # process alone, so several API processes must share a SECRET_KEY.
            log.warning("SECRET_KEY is not set: signed links are valid for this API process only")
        secret = secret or secrets.token_hex(32)
        self._secret = secret.encode()

    def _mac(self, job_id: str, scope: str, key_id: str, expires: int) -> str:
        message = f"{job_id}|{scope}|{key_id}|{expires}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, job_id: str, scope: str, key_id: str, seconds: int) -> tuple[str, int]:
        """(token, expiry as a Unix time) for `scope` ("events", "result:<name>") of one job."""
        expires = math.ceil((time.time() + seconds) / _EXPIRY_STEP_SECONDS) * _EXPIRY_STEP_SECONDS
        return f"{expires}.{key_id or '-'}.{self._mac(job_id, scope, key_id, expires)}", expires

    def key_of(self, token: str, job_id: str, scope: str) -> str | None:
        """The key id the token was issued to, when it is genuine, for this job and scope, and not expired."""
        parts = token.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 12:
            return None
        expires, key_id = int(parts[0]), "" if parts[1] == "-" else parts[1]
        if not hmac.compare_digest(parts[2].encode(), self._mac(job_id, scope, key_id, expires).encode()):
            return None
        return key_id if expires >= time.time() else None


async def caller_of_link(request: Request, job_id: str, scope: str) -> Caller:
    """The caller of a request for one job's events or result: a key in the header, else a signed link."""
    settings: Settings = request.app.state.settings
    if settings.api_auth == "open" or "authorization" in request.headers:
        return await authenticate(request)
    token = request.query_params.get("token")
    if not token:
        raise unauthorized("Send 'Authorization: Bearer <key>', or use the signed link the API gave you.")
    signer: LinkSigner = request.app.state.links
    key_id = signer.key_of(token, job_id, scope)
    record = await request.app.state.api_keys.get(key_id) if key_id else None
    if record is None or not record.active:
        raise unauthorized("The link has expired or is not valid: ask the API for a new one.")
    return Caller(key_id=record.key_id, name=record.name, admin=record.admin)
