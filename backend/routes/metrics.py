"""`GET /metrics`: the service's figures in Prometheus text format, read from Redis (shared/metrics.py).

Every process of the API answers the same: the figures live in Redis, not in process memory.
With Redis down the answer is the usual 503 QUEUE_UNAVAILABLE: Prometheus then records a
failed scrape (`up` 0) instead of figures that pretend all is well. Not in the OpenAPI
document: it is for Prometheus, not for the API's clients.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from backend.deps import RedisDep, SettingsDep
from shared import metrics
from shared.keys import RedisKeys

router = APIRouter(tags=["service"])


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(settings: SettingsDep, redis_client: RedisDep) -> Response:
    keys = RedisKeys(settings.key_prefix)
    body = await run_in_threadpool(metrics.render, redis_client, keys, settings.queue_name)
    return Response(body, media_type=metrics.CONTENT_TYPE)
