"""`GET /metrics`: the service's figures in Prometheus text format, read from Redis (shared/metrics.py).

Every process of the API answers the same: the figures live in Redis, not in process memory.
With Redis down the answer is the usual 503 QUEUE_UNAVAILABLE: Prometheus then records a
failed scrape (`up` 0) instead of figures that pretend all is well. Not in the OpenAPI
document: it is for Prometheus, not for the API's clients. It needs `METRICS_TOKEN` (as a
bearer credential: docker/prometheus.yml) or an admin key, unless the API is open.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from backend.auth import authenticate, bearer_key
from backend.deps import RedisDep, SettingsDep
from shared import metrics
from shared.errors import ErrorCode, ServiceError
from shared.keys import RedisKeys

router = APIRouter(tags=["service"])


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request, settings: SettingsDep, redis_client: RedisDep) -> Response:
    """For Prometheus with `METRICS_TOKEN` as its bearer credential, or for an admin key."""
    token = bearer_key(request)
    is_scraper = bool(
        settings.metrics_token and token and hmac.compare_digest(token.encode(), settings.metrics_token.encode())
    )
    if not is_scraper and not (await authenticate(request)).admin:
        raise ServiceError(ErrorCode.FORBIDDEN, "The metrics are for the operator: use an admin key or METRICS_TOKEN.")
    keys = RedisKeys(settings.key_prefix)
    body = await run_in_threadpool(metrics.render, redis_client, keys, settings.queue_name)
    return Response(body, media_type=metrics.CONTENT_TYPE)
