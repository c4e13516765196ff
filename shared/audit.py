"""One structured log line per change of state: who did what to which job or key.

    audit("job.canceled", actor="key:3f2a9c01b2d4 (studio-app)", job_id=job_id)

Lines go to the `audit` logger, so a log collector can route them on their own; with
LOG_FORMAT=json they carry an `audit` object ({"action", "actor", "job_id", ...}).
Callers pass ids, names and sizes only: never keys, tokens, passwords or presigned URLs.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("audit")


def audit(action: str, *, actor: str, job_id: str = "", **fields: Any) -> None:
    event: dict[str, Any] = {"action": action, "actor": actor or "system"}
    if job_id:
        event["job_id"] = job_id
    event.update(fields)
    details = " ".join(f"{name}={value}" for name, value in fields.items())
    target = f" job {job_id}" if job_id else ""
    extra: dict[str, Any] = {"audit": event}
    if job_id:
        extra["job_id"] = job_id
    log.info("%s by %s%s%s", action, event["actor"], target, f" ({details})" if details else "", extra=extra)
