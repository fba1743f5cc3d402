"""Every error answer has one shape: `{error, message, detail}`.

`error` is a short code (`WorkflowNotFound`, `JobNotFound`, `ValidationError`, …) that clients of
the earlier service switch on, `message` is one readable sentence, and `detail` keeps FastAPI's
own field (a string, or the list of `{loc, msg, type}` for validation errors). The handlers
here and `CatchAll` make sure no exception reaches a client as a bare 500 with a dropped
connection.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.service import RPCError

from core.redaction import redact_text

log = logging.getLogger("llmflow.api")

DEFAULT_CODES = {
    400: "BadRequest",
    401: "InvalidAPISecret",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "PayloadTooLarge",
    422: "ValidationError",
    429: "TooManyRequests",
    503: "ServiceUnavailable",
}


class ApiError(HTTPException):
    """An HTTPException that names its error code."""

    def __init__(
        self,
        status_code: int,
        code: str,
        detail: Any,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(status_code, detail, headers=headers)
        self.code = code
        self.extra = extra or {}


def error_body(status_code: int, detail: Any, code: str | None = None) -> dict[str, Any]:
    return {
        "error": code or DEFAULT_CODES.get(status_code, "Error"),
        "message": message_of(detail),
        "detail": detail,
    }


def message_of(detail: Any) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        text = f"{loc}: {first.get('msg', 'invalid')}" if loc else str(first.get("msg", "invalid"))
        return text if len(detail) == 1 else f"{text} (and {len(detail) - 1} more)"
    return "request failed"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = error_body(exc.status_code, exc.detail, getattr(exc, "code", None))
        body.update(getattr(exc, "extra", {}))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Malformed JSON is the client's mistake: 400 with where it broke, never 500.
        errors = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(error_body(400, errors, "InvalidJSON"), status_code=400)
        return JSONResponse(error_body(422, errors), status_code=422)

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        # Only input nested deeper than any parser or validator will walk gets here.
        return JSONResponse(
            error_body(422, "request nested too deeply to process", "NestingTooDeep"),
            status_code=422,
        )

    @app.exception_handler(RPCError)
    async def _temporal(request: Request, exc: RPCError) -> JSONResponse:
        log.warning("%s %s: Temporal error %s", request.method, request.url.path, exc.status)
        return JSONResponse(
            error_body(503, "Temporal is unavailable; retry the request", "TemporalUnavailable"),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(SQLAlchemyError)
    async def _database(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.warning("%s %s: database error %s", request.method, request.url.path, type(exc))
        return JSONResponse(
            error_body(503, "the database is unavailable; retry the request", "DatabaseError"),
            status_code=503,
            headers={"Retry-After": "5"},
        )


class CatchAll:
    """Innermost middleware: an exception no handler took becomes a JSON 500 (or 503 for a
    backing service that is down) instead of reaching uvicorn, which would log a bare 500
    and drop the keep-alive connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            response = _unexpected(scope, exc)
            await response(scope, receive, send)


def _unexpected(scope: Scope, exc: Exception) -> JSONResponse:
    where = f"{scope.get('method')} {scope.get('path')}"
    if isinstance(exc, OSError):  # ConnectionError, TimeoutError, socket errors
        log.warning("%s: %s", where, type(exc).__name__)
        return JSONResponse(
            error_body(503, "a backing service is unavailable; retry", "ServiceUnavailable"),
            status_code=503,
            headers={"Retry-After": "5"},
        )
    log.error(
        "%s: unhandled %s: %s", where, type(exc).__name__, redact_text(str(exc)), exc_info=exc
    )
    return JSONResponse(
        error_body(500, "internal error; it has been logged", "InternalError"), status_code=500
    )
