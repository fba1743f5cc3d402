"""One POST to a provider, with failures mapped to Temporal's retry decision.

Shared by the OpenAI-style and Anthropic providers. The provider's own key is scrubbed from
any error body before it reaches an error message (some APIs echo the key they rejected, and
a key set through Settings in-process is not in the env-var list the redactor knows).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
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


# The event name post_stream gives a non-streamed JSON answer to a streamed request.
WHOLE_REPLY = "whole-reply"
# A provider's SSE line longer than this is not a chat chunk; refuse it rather than buffer it.
MAX_SSE_LINE_CHARS = 1_000_000


async def post_stream(
    http: httpx.AsyncClient,
    url: str,
    *,
    headers: dict[str, str],
    body: dict[str, Any],
    timeout_seconds: float,
    what: str,
    secret: str | None,
    details: dict[str, Any],
) -> AsyncIterator[tuple[str, str]]:
    """POST, then yield (event, data) for each server-sent event of a 2xx answer (event is ""
    when the server names none). A non-2xx answer maps to the same errors as post_json; a
    dropped connection is a retryable transport error."""
    secrets = [secret] if secret else []
    try:
        async with http.stream(
            "POST", url, headers=headers, json=body, timeout=_timeout(timeout_seconds)
        ) as response:
            if response.status_code >= 300:
                text = (await response.aread()).decode(errors="replace")
                raise error_for_status(
                    response.status_code,
                    headers=dict(response.headers),
                    body=redact_text(text, extra_secrets=secrets, truncate=False),
                    what=what,
                    details=details,
                )
            if response.headers.get("content-type", "").startswith("application/json"):
                # A server that ignores `stream` and answers whole (some OpenAI-compatible ones).
                yield WHOLE_REPLY, (await response.aread()).decode(errors="replace")
                return
            event = ""
            data: list[str] = []
            async for line in response.aiter_lines():
                if len(line) > MAX_SSE_LINE_CHARS:
                    raise ErrorContext.of(
                        ErrorType.UPSTREAM_ERROR,
                        f"{what} sent a stream line of {len(line):,} characters",
                        retryable=True,
                        details=details,
                    ).to_application_error()
                if not line:
                    if data:
                        yield event, "\n".join(data)
                    event, data = "", []
                elif line.startswith(":"):
                    continue  # a comment (OpenRouter's keep-alive "OPENROUTER PROCESSING")
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
            if data:
                yield event, "\n".join(data)
    except httpx.HTTPError as exc:
        raise error_for_transport(exc, what=what, details=details) from None


def stream_ended_early(what: str, details: dict[str, Any]) -> Exception:
    # The connection closed cleanly before the provider said it was done: retry the attempt.
    return ErrorContext.of(
        ErrorType.UPSTREAM_ERROR,
        f"{what} stream ended before the reply was complete",
        retryable=True,
        details=details,
    ).to_application_error()
