"""HTTP outcome → Temporal retry decision, shared by every activity that calls out.

Temporal is the only retry authority: httpx clients are built without retries, and this module
decides per response whether the attempt may be retried and after how long (`Retry-After`).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.errors import ErrorContext, ErrorType
from core.redaction import redact_text

RETRYABLE_4XX = {408, 409, 429}
MAX_RETRY_AFTER_SECONDS = 3600.0


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if parsed is None:
            return None
        seconds = parsed.timestamp() - (now if now is not None else time.time())
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def is_retryable_status(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_4XX


def current_attempt() -> int | None:
    try:
        return activity.info().attempt
    except RuntimeError:  # called outside an activity (unit tests)
        return None


def error_for_status(
    status: int,
    *,
    headers: Mapping[str, str] | None = None,
    body: str = "",
    what: str,
    details: Mapping[str, Any] | None = None,
    retry_any: bool = False,
) -> ApplicationError:
    """ApplicationError for a non-2xx response; `what` names the call ("openai chat", …).
    `retry_any` makes every status retryable (completion callbacks)."""
    headers = headers or {}
    retryable = retry_any or is_retryable_status(status)
    retry_after = parse_retry_after(headers.get("retry-after") or headers.get("Retry-After"))
    snippet = redact_text(body.strip().replace("\n", " "), truncate=True)
    message = f"{what} returned HTTP {status}" + (f": {snippet}" if snippet else "")
    extra = {"status_code": status, **(details or {})}
    if status in (401, 403):
        kind, suggestion = ErrorType.AUTH_ERROR, "check the API key configured for this service"
    elif status == 404:
        kind, suggestion = ErrorType.UPSTREAM_NOT_FOUND, "check the model/operation name and URL"
    elif status == 429:
        kind, suggestion = ErrorType.RATE_LIMITED, "lower the request rate or raise the quota"
    elif status == 408 or status >= 500:
        kind, suggestion = ErrorType.UPSTREAM_ERROR, "the service failed; Temporal retries it"
    else:
        kind, suggestion = ErrorType.UPSTREAM_REJECTED, "check the request parameters"
    return ErrorContext.of(
        kind,
        message,
        retryable=retryable,
        retry_after=retry_after if retryable else None,
        attempt=current_attempt(),
        details={**extra, "suggestions": [suggestion]},
    ).to_application_error()


def error_for_transport(
    exc: httpx.HTTPError, *, what: str, details: Mapping[str, Any] | None = None
) -> ApplicationError:
    """Timeouts and connection failures are always retryable."""
    kind = (
        ErrorType.TIMEOUT if isinstance(exc, httpx.TimeoutException) else ErrorType.CONNECTION_ERROR
    )
    return ErrorContext.of(
        kind,
        f"{what} failed: {type(exc).__name__}: {exc}",
        retryable=True,
        attempt=current_attempt(),
        details=dict(details or {}),
    ).to_application_error()


def new_http_client(timeout: float = 60.0) -> httpx.AsyncClient:
    """The one way activities build an httpx client: no retries, no redirects, explicit timeout."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=10.0),
        follow_redirects=False,
        transport=httpx.AsyncHTTPTransport(retries=0),
        headers={"User-Agent": "LLM-Workflow-Service/0.1.0"},
    )
