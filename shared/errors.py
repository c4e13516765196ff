"""Stable error codes and the one exception type that carries them.

Both the API (as the HTTP error envelope) and the worker (as a job's `error`)
speak these codes, so a client handles one vocabulary.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any


class ErrorCode(str, Enum):
    """A machine-readable reason; never renamed once published."""

    # Request problems
    VALIDATION_ERROR = "VALIDATION_ERROR"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    MISSING_FILE = "MISSING_FILE"
    EMPTY_UPLOAD = "EMPTY_UPLOAD"
    UPLOAD_TOO_LARGE = "UPLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA = "UNSUPPORTED_MEDIA"
    INVALID_PROFILE = "INVALID_PROFILE"
    JOB_NOT_FOUND = "JOB_NOT_FOUND"
    RESULT_NOT_FOUND = "RESULT_NOT_FOUND"
    RESULT_NOT_READY = "RESULT_NOT_READY"
    JOB_ALREADY_FINISHED = "JOB_ALREADY_FINISHED"
    JOB_RUNNING = "JOB_RUNNING"
    JOB_NOT_READY = "JOB_NOT_READY"
    NOT_AN_ANALYSIS = "NOT_AN_ANALYSIS"
    RANGE_NOT_SATISFIABLE = "RANGE_NOT_SATISFIABLE"
    # Who is asking (backend/auth.py, backend/guards.py, backend/limits.py)
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    HOST_NOT_ALLOWED = "HOST_NOT_ALLOWED"
    CROSS_SITE_REQUEST = "CROSS_SITE_REQUEST"
    RATE_LIMITED = "RATE_LIMITED"
    # Dependencies
    STORAGE_UNAVAILABLE = "STORAGE_UNAVAILABLE"
    QUEUE_UNAVAILABLE = "QUEUE_UNAVAILABLE"
    # Job failures
    INVALID_VIDEO = "INVALID_VIDEO"
    VIDEO_TOO_LONG = "VIDEO_TOO_LONG"
    VIDEO_TOO_LARGE = "VIDEO_TOO_LARGE"
    SOURCE_MISSING = "SOURCE_MISSING"
    JOB_TIMEOUT = "JOB_TIMEOUT"
    WORKER_LOST = "WORKER_LOST"
    MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"
    INPUT_UNAVAILABLE = "INPUT_UNAVAILABLE"
    NOT_ENOUGH_POSE = "NOT_ENOUGH_POSE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


# The HTTP status each code maps to when it reaches a client through the API.
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.MISSING_FILE: 422,
    ErrorCode.EMPTY_UPLOAD: 422,
    ErrorCode.UPLOAD_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA: 415,
    ErrorCode.INVALID_PROFILE: 422,
    ErrorCode.JOB_NOT_FOUND: 404,
    ErrorCode.RESULT_NOT_FOUND: 404,
    ErrorCode.RESULT_NOT_READY: 409,
    ErrorCode.JOB_ALREADY_FINISHED: 409,
    ErrorCode.JOB_RUNNING: 409,
    ErrorCode.JOB_NOT_READY: 409,
    ErrorCode.NOT_AN_ANALYSIS: 422,
    ErrorCode.RANGE_NOT_SATISFIABLE: 416,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.HOST_NOT_ALLOWED: 400,
    ErrorCode.CROSS_SITE_REQUEST: 403,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.STORAGE_UNAVAILABLE: 503,
    ErrorCode.QUEUE_UNAVAILABLE: 503,
    ErrorCode.INVALID_VIDEO: 422,
    ErrorCode.VIDEO_TOO_LONG: 422,
    ErrorCode.VIDEO_TOO_LARGE: 422,
    ErrorCode.SOURCE_MISSING: 500,
    ErrorCode.JOB_TIMEOUT: 500,
    ErrorCode.WORKER_LOST: 500,
    ErrorCode.MODEL_UNAVAILABLE: 500,
    ErrorCode.INPUT_UNAVAILABLE: 409,
    ErrorCode.NOT_ENOUGH_POSE: 422,
    ErrorCode.INTERNAL_ERROR: 500,
}


# An absolute path: a slash not inside a word or URL, then at least two components.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.])(?:/[^/\s'\":]+)+/([^/\s'\":]+)")


def public_reason(text: str, limit: int = 500) -> str:
    """`text` fit for a client: absolute paths cut to their last part (no server paths,
    scratch folders or internal ids), at most `limit` characters."""
    return _ABSOLUTE_PATH.sub(r"\1", text)[:limit]


_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"]+")
_HOST_PORT = re.compile(r"(?<![\w.-])(?:\[[0-9a-fA-F:]+\]|[\w.-]+):\d{1,5}\b")


def hide_addresses(text: str) -> str:
    """`text` without URLs or host:port pairs: why a dependency failed may reach anyone who
    asks (the error envelope, /health), but where the servers are is for the operator's logs."""
    return _HOST_PORT.sub("<address>", _URL.sub("<address>", text))


class ServiceError(Exception):
    """An expected failure with a stable code, a message for people and details for programs."""

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code.value, "message": self.message, "details": self.details}


class JobCanceled(Exception):
    """Raised inside the worker when a client canceled the job it is running."""
