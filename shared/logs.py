"""Logging for every process of the service: one handler, one line per record, the job id on it.

    configure_logging(settings)          # at process start: the API, the worker, the supervisor
    with job_context(job_id): ...        # every line logged inside carries "job_id"

`LOG_FORMAT=json` (the default) writes one JSON object per line:

    {"time": "2026-11-21T10:04:05.123Z", "level": "INFO", "logger": "worker.tasks",
     "message": "...", "job_id": "3f2a...", "exc_info": "Traceback ..."}

`job_id` is there whenever the line was logged while a job was handled (the
worker sets it around each job, the API around requests for one job), or when
the call passed it (`extra={"job_id": ...}`); `exc_info` when an exception was
logged. `LOG_FORMAT=text` writes the same as plain lines for a terminal.

Libraries log through the same handler: RQ's own `setup_loghandlers` adds no
handler of its own once the root logger has one, and uvicorn's loggers, which
its default configuration gives their own plain-text handlers, are routed
here instead (with `--no-access-log` the access log stays off).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from shared.settings import LogFormat, Settings, get_settings

_job_id: ContextVar[str | None] = ContextVar("dance_job_id", default=None)

# A handler installed here carries this attribute, so a second call replaces it instead of adding one.
_OURS = "_dance_handler"
# uvicorn's default configuration gives these loggers handlers of their own.
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
# RQ colours queue names and job ids when stdout is a terminal: escape codes mean nothing in a log store.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Secrets that could reach a line (uvicorn's access log prints query strings): the API's signed
# `token=`, presigned URLs' signatures and credentials, bearer keys, API keys themselves.
_SECRETS = (
    (
        re.compile(r"([?&](?:token|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature)=)[^&\s\"']+"),
        r"\1REDACTED",
    ),
    (re.compile(r"(Bearer\s+)[^\s\"']+", re.IGNORECASE), r"\1REDACTED"),
    (re.compile(r"\b(dak_[0-9a-f]{12}_)[A-Za-z0-9_-]{43}"), r"\1REDACTED"),
)


def redact(text: str) -> str:
    """`text` with every secret it may hold replaced by REDACTED (the key id of an API key stays)."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Every line logged inside (in this thread or task) carries `job_id`."""
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


def current_job_id() -> str | None:
    return _job_id.get()


def _job_id_of(record: logging.LogRecord) -> str | None:
    given = getattr(record, "job_id", None)
    return str(given) if given else _job_id.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (ISO 8601, UTC), level, logger, message, job_id, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        if "\x1b" in message:
            message = _ANSI.sub("", message)
        moment = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line: dict[str, Any] = {
            "time": moment.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        job_id = _job_id_of(record)
        if job_id:
            line["job_id"] = job_id
        event = getattr(record, "audit", None)
        if isinstance(event, dict):
            line["audit"] = event
        if record.exc_info:
            line["exc_info"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc_info"] = redact(record.exc_text)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2026-11-21 10:04:05,123 INFO worker.tasks [job 3f2a...]: message` for a human at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(job_tag)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        job_id = _job_id_of(record)
        record.job_tag = f" [job {job_id}]" if job_id else ""
        return redact(super().format(record))


def formatter_for(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(
    settings: Settings | None = None, *, level: int = logging.INFO, stream: TextIO | None = None
) -> logging.Handler | None:
    """Send every logger's records through one handler in `settings.log_format`, on stderr.

    Called again, it replaces its own handler. Like `logging.basicConfig`, it leaves a root
    logger alone that someone else configured first (pytest's capture, an embedding
    application) and returns None then; otherwise the handler it installed.
    """
    log_format = (settings or get_settings()).log_format
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if getattr(handler, _OURS, False)]
    if root.handlers and not ours:
        return None
    for handler in ours:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _OURS, True)
    handler.setFormatter(formatter_for(log_format))
    root.addHandler(handler)
    root.setLevel(level)
    for name in _UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if logger.handlers:
            # uvicorn's own plain-text handlers: its records come through ours instead.
            # (`--no-access-log` leaves uvicorn.access with no handler and no propagation: still off.)
            logger.handlers.clear()
            logger.propagate = True
    return handler
