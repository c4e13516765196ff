"""Start a worker: `python -m worker`.

Models load once here, before the first job, and jobs run in this same
process (an RQ SimpleWorker: no fork per job, so loaded models stay loaded
and a CUDA context is never forked). A missing model stops the worker at
start with a clear message instead of failing jobs later.
"""

from __future__ import annotations

import logging
import sys

from rq import SimpleWorker
from rq.serializers import JSONSerializer

from shared.errors import ServiceError
from shared.queue import get_queue
from shared.settings import get_settings
from worker.context import build_context, set_context

log = logging.getLogger("worker")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    try:
        context = build_context(settings)
    except ServiceError as exc:
        log.error("%s: %s", exc.code.value, exc.message)
        return 2
    set_context(context)
    reaped = context.store.fail_stale_running(settings.heartbeat_timeout_seconds)
    if reaped:
        log.warning("marked %d job(s) whose worker died as failed (WORKER_LOST): %s", len(reaped), ", ".join(reaped))
    log.info("worker ready: mode=%s queue=%s", settings.mode, settings.queue_name)
    worker = SimpleWorker([get_queue(settings, context.redis)], connection=context.redis, serializer=JSONSerializer)
    worker.work(with_scheduler=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
