"""Signed JSON POSTs: the `webhook` step, and job callbacks (completion, debug events).

Each Temporal attempt is one delivery attempt: the delivery id stays the same across attempts
(receivers dedupe on it), the timestamp and its signature are fresh each time. Redirects are
never followed. 410 Gone means the receiver is gone for good: no retry. Otherwise:
- job callbacks retry every other non-2xx (a receiver answers 401 while its secret rotates and
  500 on its own bugs, and both heal), within the delivery workflow's 24 h window;
- `webhook` steps give up on every 4xx except 408/429 (a 409 is not retried here), so a bad
  request fails its step instead of holding the job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import metadata
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.http_errors import current_attempt, error_for_status, error_for_transport
from activities.http_step import read_capped, redirect_error, url_blocked_error
from activities.webhook_step_models import WebhookSendInput
from core.contracts import DELIVER_JOB_WEBHOOK, WEBHOOK_SEND
from core.db import get_job_secret, record_delivery
from core.errors import ErrorContext, ErrorType, config_error
from core.models import WebhookDelivery
from core.redaction import redact_text
from core.secret_box import KEY_ENV, SecretBox, SecretUnavailable
from core.settings import Settings
from core.ssrf import BlockedAddressError, check_url
from core.step_outputs import WebhookSendOutput
from core.webhook_signing import build_webhook_headers, encode_body

log = logging.getLogger(__name__)
SNIPPET_CHARS = 500
# Enough of the receiver's answer for the snippet and error messages; the rest is not read.
MAX_READ_BYTES = 16 * 1024
ENV_SECRET_REFS = (None, "env")


def _package_version() -> str:
    try:
        return metadata.version("llmflow")
    except metadata.PackageNotFoundError:
        return "0.1.0"


class WebhookActivities:
    """`webhook_send` (webhook steps) and `deliver_job_webhook` (completion webhooks, which
    also resolve per-job secrets and record every attempt in webhook_deliveries)."""

    def __init__(
        self,
        settings: Settings,
        client: httpx.AsyncClient,
        engine: Engine | None = None,
        box: SecretBox | None = None,
    ) -> None:
        self._settings = settings
        self._client = client  # guarded_client(allow_private=settings.webhook_allow_private)
        self._engine = engine
        self._box = box or SecretBox.from_settings(settings)
        self._version = _package_version()

    async def _secret(self, secret_ref: str | None) -> str:
        if secret_ref is not None and secret_ref.startswith("job:") and self._engine is not None:
            return await self._job_secret(secret_ref.removeprefix("job:"))
        if secret_ref not in ENV_SECRET_REFS:
            raise config_error(
                f"webhook secret_ref {secret_ref!r} is not supported; use 'env'",
                env_var="LLM_WEBHOOK_SECRET",
            )
        if not self._settings.llm_webhook_secret:
            raise config_error(
                "no webhook signing secret configured: LLM_WEBHOOK_SECRET is not set",
                env_var="LLM_WEBHOOK_SECRET",
            )
        return self._settings.llm_webhook_secret

    async def _job_secret(self, job_id: str) -> str:
        assert self._engine is not None
        try:
            secret = await asyncio.to_thread(get_job_secret, self._engine, job_id)
        except SQLAlchemyError as exc:
            raise ErrorContext.of(
                ErrorType.DATABASE_ERROR,
                f"could not read the job's webhook secret: {type(exc).__name__}",
                retryable=True,
            ).to_application_error() from None
        if not secret:
            raise config_error(
                f"job {job_id} has no stored webhook secret "
                "(it is deleted once the job's completion delivery ends)"
            )
        try:
            return self._box.open(secret)
        except SecretUnavailable as exc:
            raise config_error(f"job {job_id}: {exc}", env_var=KEY_ENV) from None

    @activity.defn(name=DELIVER_JOB_WEBHOOK)
    async def deliver_job_webhook(self, input: WebhookSendInput) -> WebhookSendOutput:
        started = time.monotonic()
        try:
            out = await self._send(input, callback=True)
        except ApplicationError as exc:
            ctx = ErrorContext.from_failure(exc)
            await self._record(
                input,
                outcome="retrying" if ctx.retryable else "failed",
                status_code=ctx.details.status_code,
                error=ctx.message,
                duration_ms=int((time.monotonic() - started) * 1000),
            )
            raise
        await self._record(
            input,
            outcome="delivered",
            status_code=out.status_code,
            duration_ms=out.duration_ms,
            snippet=out.response_snippet,
        )
        return out

    async def _record(
        self,
        input: WebhookSendInput,
        *,
        outcome: str,
        status_code: int | None,
        duration_ms: int,
        error: str | None = None,
        snippet: str | None = None,
    ) -> None:
        if self._engine is None:
            return
        row = WebhookDelivery(
            delivery_id=input.delivery_id,
            job_id=input.job_id,
            event=input.event,
            url=redact_text(input.url, truncate=False)[:2000],
            attempt=current_attempt() or 1,
            status_code=status_code,
            outcome=outcome,
            error=redact_text(error, truncate=False)[:1000] if error else None,
            duration_ms=duration_ms,
            response_snippet=snippet,
        )
        try:
            await asyncio.to_thread(record_delivery, self._engine, row)
        except SQLAlchemyError:
            # The attempt itself is in Temporal's history; a missing audit row must not turn
            # a delivered webhook into a retried (duplicate) one.
            log.warning("could not record webhook attempt for job %s", input.job_id)

    @activity.defn(name=WEBHOOK_SEND)
    async def webhook_send(self, input: WebhookSendInput) -> WebhookSendOutput:
        return await self._send(input)

    async def _send(self, input: WebhookSendInput, *, callback: bool = False) -> WebhookSendOutput:
        secret = await self._secret(input.secret_ref)
        try:
            check_url(input.url, allow_private=self._settings.webhook_allow_private)
        except BlockedAddressError as exc:
            raise url_blocked_error(exc, step_id=input.step_id, url=input.url) from None
        try:
            body = encode_body(input.payload)
        except (TypeError, ValueError) as exc:
            raise ErrorContext.of(
                ErrorType.VALIDATION_ERROR,
                f"webhook payload is not JSON-serialisable: {exc}",
                retryable=False,
                step_id=input.step_id,
            ).to_application_error() from None

        attempt = current_attempt() or 1
        headers = build_webhook_headers(
            secret=secret,
            body=body,
            event=input.event,
            delivery_id=input.delivery_id,
            timestamp=int(time.time()),
            version=self._version,
        )
        what = f"webhook {input.event} delivery {input.delivery_id}"
        details: dict[str, Any] = {"operation": "webhook_send"}
        started = time.monotonic()
        try:
            async with self._client.stream(
                "POST",
                input.url,
                content=body,
                headers=headers,
                timeout=httpx.Timeout(
                    input.timeout_seconds, connect=min(10.0, input.timeout_seconds)
                ),
            ) as response:
                raw, _ = await read_capped(response, MAX_READ_BYTES)
        except BlockedAddressError as exc:
            raise url_blocked_error(exc, step_id=input.step_id, url=input.url) from None
        except httpx.HTTPError as exc:
            raise error_for_transport(exc, what=what, details=details) from None
        duration_ms = int((time.monotonic() - started) * 1000)

        text = raw.decode(response.charset_encoding or "utf-8", errors="replace")
        snippet = redact_text(text, extra_secrets=[secret], truncate=False)[:SNIPPET_CHARS]
        status = response.status_code
        if 200 <= status < 300:
            return WebhookSendOutput(
                status_code=status,
                delivery_id=input.delivery_id,
                attempt=attempt,
                duration_ms=duration_ms,
                response_snippet=snippet,
            )
        if 300 <= status < 400:
            raise redirect_error(
                response, what=what, step_id=input.step_id, details=details, retryable=callback
            )
        raise _status_error(
            response,
            snippet,
            what=what,
            step_id=input.step_id,
            details=details,
            retry_client_errors=callback,
        )


def _status_error(
    response: httpx.Response,
    snippet: str,
    *,
    what: str,
    step_id: str | None,
    details: dict[str, Any],
    retry_client_errors: bool,
) -> ApplicationError:
    status = response.status_code
    if status == 410:
        return ErrorContext.of(
            ErrorType.UPSTREAM_REJECTED,
            f"{what}: receiver answered 410 Gone; giving up",
            retryable=False,
            step_id=step_id,
            attempt=current_attempt(),
            details={
                **details,
                "status_code": status,
                "suggestions": ["the receiver retired this endpoint; update the webhook URL"],
            },
        ).to_application_error()
    if 400 <= status < 500 and status not in (408, 429) and not retry_client_errors:
        # Every other 4xx gives up, including 409 which plain HTTP calls retry.
        return ErrorContext.of(
            ErrorType.AUTH_ERROR if status in (401, 403) else ErrorType.UPSTREAM_REJECTED,
            f"{what} returned HTTP {status}: {snippet}"
            if snippet
            else f"{what} returned HTTP {status}",
            retryable=False,
            step_id=step_id,
            attempt=current_attempt(),
            details={
                **details,
                "status_code": status,
                "suggestions": ["check the receiver's signature secret and payload handling"],
            },
        ).to_application_error()
    # 408, 429, 5xx (and any status, for callbacks): retryable, honouring Retry-After.
    return error_for_status(
        status,
        headers=dict(response.headers),
        body=snippet,
        what=what,
        details=details,
        retry_any=retry_client_errors,
    )
