"""A job's time budget, set from its video's duration.

RQ enforces one hard limit per job, fixed at enqueue time, before anyone knows
how long the video is (shared/queue.py sets it for the longest video allowed).
Once the worker has probed the video it narrows the budget to
`base + factor x duration`: the job checks it at every progress report
(`JobReporter.deadline`), and RQ's alarm is re-armed to the same budget plus
a grace period, so even a stage stuck inside C code is stopped.
"""

from __future__ import annotations

import signal
import threading
import time

from rq import get_current_job

from shared.settings import Settings

GRACE_SECONDS = 30


def budget_seconds(settings: Settings, duration: float) -> int:
    return int(settings.job_timeout_base_seconds + settings.job_timeout_factor * duration)


def narrow_hard_timeout(seconds: int) -> bool:
    """Re-arm RQ's SIGALRM death penalty to `seconds` (+ grace). True when it was armed.

    Only in the main thread of an in-process worker with RQ's alarm handler
    installed; elsewhere (tests, thread pools) there is nothing to narrow.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    handler = signal.getsignal(signal.SIGALRM)
    if getattr(handler, "__name__", "") != "handle_death_penalty":
        return False
    signal.alarm(seconds + GRACE_SECONDS)
    job = get_current_job()
    if job is not None:
        job.meta["budget_seconds"] = seconds
        job.save_meta()
    return True


def deadline_after(seconds: int) -> float:
    return time.monotonic() + seconds
