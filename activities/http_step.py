"""The `http` step: one request to a user-supplied URL through the SSRF guard.

The step's output lands in Temporal history, so the body is capped and response headers are
redacted (cookies, auth echoes). Redirects are never followed: a 3xx is a failure unless the
definition lists it in `expected_status`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.http_errors import current_attempt, error_for_status, error_for_transport
from activities.http_step_models import HttpRequestInput
from core.contracts import HTTP_REQUEST
from core.errors import ErrorContext, ErrorType
from core.redaction import redact, redact_text
from core.settings import Settings
from core.ssrf import BlockedAddressError, check_url
from core.step_outputs import HttpRequestOutput

MAX_BODY_BYTES = 1024 * 1024
ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def url_blocked_error(
    exc: BlockedAddressError, *, step_id: str | None, url: str
) -> ApplicationError:
    """Non-retryable: the address will not become acceptable by trying again."""
    return ErrorContext.of(
        ErrorType.URL_BLOCKED,
        f"URL blocked by the SSRF guard: {exc}",
        retryable=False,
        step_id=step_id,
        attempt=current_attempt(),
        details={
            "inputs": {"url": redact_text(url)},
            "suggestions": [
                "use a public http(s) URL; set WEBHOOK_ALLOW_PRIVATE=true only for local development"
            ],
        },
    ).to_application_error()


def redirect_error(
    response: httpx.Response,
    *,
    what: str,
    step_id: str | None,
    details: dict[str, Any],
    retryable: bool = False,
) -> ApplicationError:
    location = redact_text(response.headers.get("location", "(none)"))
    return ErrorContext.of(
        ErrorType.UPSTREAM_REJECTED,
        f"{what} answered HTTP {response.status_code} redirecting to {location}; "
        "redirects are not followed",
        retryable=retryable,
        step_id=step_id,
        attempt=current_attempt(),
        details={
            **details,
            "status_code": response.status_code,
            "suggestions": ["use the final URL directly"],
        },
    ).to_application_error()


async def read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most `limit` decoded bytes of the body, and whether more was cut off.

    Counting decoded bytes also bounds a compressed body that expands enormously.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def _describe(method: str, url: str) -> str:
    # Without the query string: it is where URL-borne credentials usually sit.
    parsed = httpx.URL(url)
    return f"{method} {parsed.scheme}://{parsed.netloc.decode('ascii', 'replace')}{parsed.path}"


def _query_params(query: dict[str, Any]) -> dict[str, Any]:
    # httpx takes scalars and lists of scalars; nested values are sent as JSON text.
    params: dict[str, Any] = {}
    for key, value in query.items():
        if isinstance(value, dict):
            params[key] = json.dumps(value, separators=(",", ":"))
        elif isinstance(value, list):
            params[key] = [
                json.dumps(v, separators=(",", ":")) if isinstance(v, dict | list) else v
                for v in value
            ]
        else:
            params[key] = value
    return params


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _decode(response: httpx.Response, raw: bytes) -> str:
    return raw.decode(response.charset_encoding or "utf-8", errors="replace")


class HttpActivities:
    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client  # guarded_client(allow_private=settings.webhook_allow_private)

    @activity.defn(name=HTTP_REQUEST)
    async def http_request(self, input: HttpRequestInput) -> HttpRequestOutput:
        method = input.method.upper()
        if method not in ALLOWED_METHODS:
            raise ErrorContext.of(
                ErrorType.VALIDATION_ERROR,
                f"http step '{input.step_id}': unsupported method {input.method!r}",
                retryable=False,
                step_id=input.step_id,
                details={"suggestions": [f"use one of {', '.join(ALLOWED_METHODS)}"]},
            ).to_application_error()
        try:
            check_url(input.url, allow_private=self._settings.webhook_allow_private)
        except BlockedAddressError as exc:
            raise url_blocked_error(exc, step_id=input.step_id, url=input.url) from None

        what = f"http step '{input.step_id}' ({_describe(method, input.url)})"
        details: dict[str, Any] = {"operation": method}
        try:
            async with self._client.stream(
                method,
                input.url,
                params=_query_params(input.query) or None,
                headers=input.headers,
                json=input.json_body,
                timeout=httpx.Timeout(
                    input.timeout_seconds, connect=min(10.0, input.timeout_seconds)
                ),
            ) as response:
                raw, truncated = await read_capped(response, MAX_BODY_BYTES)
        except BlockedAddressError as exc:
            raise url_blocked_error(exc, step_id=input.step_id, url=input.url) from None
        except httpx.HTTPError as exc:
            raise error_for_transport(exc, what=what, details=details) from None
        except (httpx.InvalidURL, UnicodeEncodeError) as exc:
            # e.g. a header value that isn't Latin-1: the definition is wrong, don't retry.
            raise ErrorContext.of(
                ErrorType.VALIDATION_ERROR,
                f"{what}: cannot build the request: {exc}",
                retryable=False,
                step_id=input.step_id,
            ).to_application_error() from None

        status = response.status_code
        expected = (
            status in input.expected_status
            if input.expected_status is not None
            else 200 <= status < 300
        )
        if not expected:
            if 300 <= status < 400:
                raise redirect_error(response, what=what, step_id=input.step_id, details=details)
            if input.expected_status is not None:
                details["config"] = {"expected_status": input.expected_status}
            raise error_for_status(
                status,
                headers=dict(response.headers),
                body=_decode(response, raw[:4096]),
                what=what,
                details=details,
            )
        return HttpRequestOutput(
            status_code=status,
            headers=redact(dict(response.headers)),
            data=self._data(response, raw, truncated, what),
            attempt=current_attempt() or 1,
        )

    @staticmethod
    def _data(response: httpx.Response, raw: bytes, truncated: bool, what: str) -> Any:
        if not raw:
            return None
        if _is_json(response.headers.get("content-type", "")):
            if truncated:
                # A cut JSON document can't be parsed, and silently handing back text instead
                # would change the type later steps see.
                raise ErrorContext.of(
                    ErrorType.OUTPUT_INVALID,
                    f"{what} returned a JSON body over {MAX_BODY_BYTES} bytes",
                    retryable=False,
                    details={"suggestions": ["ask the API for a smaller page of results"]},
                ).to_application_error()
            try:
                return json.loads(raw)
            except ValueError:
                pass  # mislabelled body: hand it over as text
        return _decode(response, raw)
