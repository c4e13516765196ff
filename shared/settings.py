"""Every setting of the service, read once from the environment.

One `Settings` object serves the API and the worker, so a value means the same
on both sides. Bad values fail at start-up, not in the middle of a job.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.profiles import Profile

Device = Literal["auto", "cpu", "cuda", "mps"]
LogFormat = Literal["json", "text"]
Environment = Literal["local", "production"]
ApiAuth = Literal["keys", "open"]

# Values a production stack refuses for any secret: the placeholders of .env.example and
# the well-known defaults of the servers (as full-stack-fastapi-template refuses "changethis").
_KNOWN_DEFAULT_SECRETS = frozenset({"minioadmin", "changethis", "change-me", "changeme", "admin", "password", "secret"})


# A Host header's value: a name or a bracketed IPv6 address, then an optional numeric port.
_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9.-]+))(?::[0-9]{1,5})?")


def host_name(host: str) -> str:
    """The name part of a Host header value, lower-case: no port, IPv6 without its brackets;
    "" for anything that is not a plain name or address with an optional numeric port."""
    found = _HOST.fullmatch(host.strip().lower())
    if not found:
        return ""
    return found["ipv6"] or found["name"].rstrip(".")


def is_placeholder_secret(value: str) -> bool:
    """Empty, a CHANGE-ME placeholder or a well-known default: not a secret anyone chose."""
    text = value.strip().lower()
    return not text or "change-me" in text or "changeme" in text or text in _KNOWN_DEFAULT_SECRETS


class Settings(BaseSettings):
    # Read from the process environment only: Compose passes `.env` in, and
    # manage.sh exports the local stack's values, so no file is read behind anyone's back.
    # hide_input_in_errors: a refused setting's error must not quote the other settings' secrets.
    model_config = SettingsConfigDict(extra="ignore", hide_input_in_errors=True)

    # --- Redis and the queue -------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    queue_name: str = "analysis"
    key_prefix: str = Field("dance", description="Prefix of every Redis key this service writes.")

    # --- Object storage (S3 / MinIO / SeaweedFS) -----------------------------
    s3_endpoint_url: str = "http://127.0.0.1:9000"
    # The endpoint clients reach; presigned URLs are signed for this host.
    # Empty: result links are served through the API instead.
    s3_public_endpoint_url: str = ""
    s3_access_key: str = "minioadmin"
    s3_secret_key: str = "minioadmin"
    s3_region: str = "us-east-1"
    s3_bucket: str = "dance-analysis"
    presign_expiry_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600)

    # --- Who may use it (backend/auth.py, shared/apikeys.py) ------------------
    # production: every secret must be set and not a placeholder, and the API needs keys.
    environment: Environment = "local"
    # keys: every call needs an API key (`Authorization: Bearer ...`); open: anyone who can reach
    # the API may do anything (frontend work on a loopback-bound stack only).
    api_auth: ApiAuth = "keys"
    # Signs the short-lived links of the API (event streams, results served through the API).
    # Every API process must share it; empty outside production: a random one per run of the API
    # (`python -m backend` hands one to all of its processes).
    secret_key: str = ""
    # Host names the API answers to (DNS rebinding); the host of PUBLIC_BASE_URL is always added. "*": any.
    allowed_hosts: str = "localhost,127.0.0.1,[::1]"
    # Per API key: uploads being received at once, and jobs waiting or running (429 beyond).
    max_uploads_in_flight_per_key: int = Field(2, ge=1)
    max_queued_jobs_per_key: int = Field(20, ge=1)
    # Prometheus' credential for GET /metrics (admin keys work too); empty: admin keys only.
    metrics_token: str = ""
    # The RQ dashboard's login (backend/dashboard.py); it never runs without a password.
    rq_dashboard_username: str = "admin"
    rq_dashboard_password: str = ""

    # --- API -----------------------------------------------------------------
    # API processes `python -m backend` runs (uvicorn workers); 0: one per CPU core it may use.
    api_processes: int = Field(0, ge=0, le=64)
    public_base_url: str = Field("", description="Base URL clients use for the API; empty: taken from the request.")
    max_upload_mb: int = Field(2048, ge=1)
    upload_part_mb: int = Field(8, ge=5, le=512)
    cors_origins: str = Field("", description="Comma-separated origins allowed by CORS; '*' for any.")

    # --- Analysis ------------------------------------------------------------
    use_mock_analysis: bool = False
    default_profile: Profile = Profile.FAST
    device: Device = "auto"
    max_video_seconds: float = Field(30 * 60, gt=0)
    # Frames above this many pixels (default: 4096x2160, DCI 4K) are refused at probe time
    # (VIDEO_TOO_LARGE): an 8K frame takes ~4 GB of worker memory through the analysis.
    max_video_pixels: int = Field(4096 * 2160, ge=64 * 64)
    # Budget per job: base + factor x video duration (see worker/timeouts.py).
    job_timeout_base_seconds: int = Field(120, ge=10)
    job_timeout_factor: float = Field(10.0, gt=0)
    progress_every_frames: int = Field(15, ge=1)
    render_preset: str = "veryfast"
    render_crf: int = Field(23, ge=0, le=51)
    # A running job whose worker has been silent this long is failed (WORKER_LOST).
    heartbeat_timeout_seconds: int = Field(120, ge=10)
    work_dir: str = Field("", description="Scratch folder of the worker; empty: the system temp dir.")
    # Workers run at this niceness so a busy worker never starves the API on the same machine.
    worker_nice: int = Field(10, ge=0, le=19)

    # --- Recovery (shared/reconcile.py) --------------------------------------
    # How many times a job is run before a lost worker fails it (WORKER_LOST).
    max_attempts: int = Field(3, ge=1, le=10)
    # A worker's presence key lives this long without a refresh; then its jobs count as lost.
    worker_presence_ttl_seconds: int = Field(15, ge=3, le=600)
    reconcile_interval_seconds: float = Field(10.0, gt=0, le=3600)
    # A multipart upload with no new part for this long is aborted (its client or API process died).
    abandoned_upload_seconds: int = Field(900, ge=1)
    # Finished jobs older than this are removed with all their files; 0 keeps them forever.
    retention_days: float = Field(30.0, ge=0)

    # --- Operating it (shared/logs.py) ---------------------------------------
    # json: one JSON object per line (time, level, logger, message, job_id); text: for a terminal.
    log_format: LogFormat = "json"

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("s3_endpoint_url", "s3_public_endpoint_url", "public_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _production_is_closed(self) -> Settings:
        """A production stack starts only with secrets someone chose and with API keys on."""
        if self.environment != "production":
            return self
        problems = []
        if self.api_auth != "keys":
            problems.append("API_AUTH must be 'keys' (an open API serves anyone who reaches it)")
        for name in ("s3_secret_key", "secret_key"):
            if is_placeholder_secret(getattr(self, name)):
                problems.append(f"{name.upper()} is empty, a CHANGE-ME placeholder or a well-known default")
        for name in ("metrics_token", "rq_dashboard_password"):
            value = getattr(self, name)
            if value and is_placeholder_secret(value):
                problems.append(f"{name.upper()} is a CHANGE-ME placeholder or a well-known default")
        if self.secret_key and len(self.secret_key) < 32 and not problems:
            problems.append("SECRET_KEY must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        if problems:
            raise ValueError("ENVIRONMENT=production refuses to start: " + "; ".join(problems))
        return self

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def upload_part_bytes(self) -> int:
        return self.upload_part_mb * 1024 * 1024

    @property
    def mode(self) -> Literal["mock", "real"]:
        return "mock" if self.use_mock_analysis else "real"

    @property
    def allowed_host_list(self) -> list[str]:
        """Host names the API answers to, as `host_name` reads them from a Host header; ["*"] for any."""
        given = [host.strip() for host in self.allowed_hosts.split(",") if host.strip()]
        if "*" in given:
            return ["*"]
        hosts = {host_name(host) for host in given} - {""}
        public = urlsplit(self.public_base_url).hostname if self.public_base_url else None
        if public:
            hosts.add(host_name(public) or public.lower())
        return sorted(hosts)

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()


def redis_retry_options() -> dict[str, Any]:
    """Options for every Redis client: a connection closed by a restarted server is retried on a
    new one (three tries, 50-500 ms apart) instead of failing the request that found it."""
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry

    return {
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }


def async_redis_retry_options() -> dict[str, Any]:
    """`redis_retry_options` for redis.asyncio clients."""
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return {
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
