"""One POST to a provider, with failures mapped to Temporal's retry decision.

Shared by the OpenAI-style and Anthropic providers. The provider's own key is scrubbed from
any error body before it reaches an error message (some APIs echo the key they rejected, and
a key set through Settings in-process is not in the env-var list the redactor knows).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from activities.http_errors import error_for_status, error_for_transport
from core.errors import ErrorContext, ErrorType
from core.redaction import redact_text


def _timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(10.0, seconds))


async def post_json(
    http: httpx.AsyncClient,
    url: str,
    *,
    headers: dict[str, str],
    body: dict[str, Any],
    timeout_seconds: float,
    what: str,
    secret: str | None,
    details: dict[str, Any],
) -> dict[str, Any]:
    """The decoded JSON object of a 2xx response; raises ApplicationError otherwise."""
    secrets = [secret] if secret else []
    try:
        response = await http.post(
            url, headers=headers, json=body, timeout=_timeout(timeout_seconds)
        )
    except httpx.HTTPError as exc:
        raise error_for_transport(exc, what=what, details=details) from None
    text = response.text
    if response.status_code >= 300:
        # 3xx too: redirects are not followed, and a redirected API call is a misconfiguration.
        raise error_for_status(
            response.status_code,
            headers=dict(response.headers),
            body=redact_text(text, extra_secrets=secrets, truncate=False),
            what=what,
            details=details,
        )
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        # A 2xx that isn't a JSON object is a gateway/proxy hiccup more often than not.
        raise ErrorContext.of(
            ErrorType.UPSTREAM_ERROR,
            f"{what} returned a non-JSON body: {redact_text(text, extra_secrets=secrets)}",
            retryable=True,
            details={**details, "status_code": response.status_code},
        ).to_application_error()
    return payload


def error_in_body(
    payload: dict[str, Any], *, what: str, secret: str | None, details: dict[str, Any]
) -> Exception:
    """A 200 whose body is an error object (OpenRouter does this for upstream failures)."""
    error = payload.get("error")
    raw = json.dumps(error) if not isinstance(error, str) else error
    body = redact_text(raw, extra_secrets=[secret] if secret else [], truncate=False)
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, int) and 400 <= code <= 599:
        return error_for_status(code, body=body, what=what, details=details)
    return error_for_status(502, body=body, what=what, details=details)
