"""The one error envelope: every error, 404 and 422 included, is
`{"error": {"code", "message", "details"}}` with a stable code."""

from __future__ import annotations

import logging
import re
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import ErrorCode, ServiceError, hide_addresses

log = logging.getLogger(__name__)

_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED, 422: ErrorCode.VALIDATION_ERROR}


def envelope(code: ErrorCode | str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": ErrorCode(code).value, "message": message, "details": details or {}}}


# Failures of a dependency: the operator's log gets the full reason, the client one without addresses.
_DEPENDENCY_CODES = frozenset({ErrorCode.STORAGE_UNAVAILABLE, ErrorCode.QUEUE_UNAVAILABLE})


def error_response(error: ServiceError) -> JSONResponse:
    details = error.details
    if error.code in _DEPENDENCY_CODES and "reason" in details:
        log.warning("%s: %s", error.code.value, details["reason"])
        details = {**details, "reason": hide_addresses(str(details["reason"]))}
    headers = {}
    if error.code is ErrorCode.UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Bearer realm="dance-analysis"'
    if "retry_after_seconds" in error.details:
        headers["Retry-After"] = str(int(error.details["retry_after_seconds"]))
    return JSONResponse(envelope(error.code, error.message, details), status_code=error.http_status, headers=headers)


# The envelope's schema, for the OpenAPI document.
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "enum": [code.value for code in ErrorCode]},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
            "required": ["code", "message", "details"],
        }
    },
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"description": "Error", "content": {"application/json": {"schema": ERROR_SCHEMA}}}
        for status in statuses
    }


def _allowed_methods(request: Request) -> str:
    """The methods the OpenAPI document lists for this path. FastAPI's own 405 names only the
    first matching route's, but GET and DELETE /jobs/{job_id} are two routes."""
    methods: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        parts = template.split("/")
        pattern = "/".join("[^/]+" if p.startswith("{") and p.endswith("}") else re.escape(p) for p in parts)
        if re.fullmatch(pattern, request.url.path):
            methods |= {method.upper() for method in item}
    return ", ".join(sorted(methods))


def _document_envelope(app: FastAPI) -> None:
    """Make the OpenAPI document say what the handlers below send: FastAPI declares its own
    `{"detail": [...]}` shape for the 422 of every route with parameters."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path_item in schema.get("paths", {}).values():
                for operation in path_item.values():
                    responses = operation.get("responses", {})
                    if "422" in responses:
                        responses["422"] = {**error_responses(422)[422], "description": "Validation error"}
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema


def install_error_handlers(app: FastAPI) -> None:
    _document_envelope(app)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in err.get("loc", ())), "message": err.get("msg", "")}
            for err in exc.errors()
        ]
        return JSONResponse(
            envelope(ErrorCode.VALIDATION_ERROR, "The request is not valid.", {"problems": problems}), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's "There was an error parsing the body" (a JSON body that is not UTF-8, say):
            # a malformed request like any other, in the status every route documents.
            details = {"reason": str(exc.detail)}
            message = "The request body could not be read."
            return JSONResponse(envelope(ErrorCode.VALIDATION_ERROR, message, details), status_code=422)
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.INTERNAL_ERROR)
        message = "No such endpoint." if exc.status_code == 404 else str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        return JSONResponse(envelope(code, message), status_code=exc.status_code, headers=headers)

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    async def _redis_down(_: Request, exc: Exception) -> JSONResponse:
        return error_response(
            ServiceError(ErrorCode.QUEUE_UNAVAILABLE, "The job queue (Redis) is unavailable.", {"reason": str(exc)})
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(envelope(ErrorCode.INTERNAL_ERROR, "Something went wrong on our side."), status_code=500)
