"""The `external_api` activity: one call to a service declared in workflow_defs/services.json.

The registry says how step parameters become a request; this module adds what the registry must
not hold (the key and base-URL override from the environment), sends it, maps failures onto the
error taxonomy and caches successful answers. Temporal retries; nothing here does.

The API key travels in a query string for some services, so it is scrubbed from every message
this module builds and from httpx's own request log line; URLs are never put into messages.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.cache import ResponseCache
from activities.external_api_models import ExternalApiInput
from activities.http_errors import current_attempt, error_for_status, error_for_transport
from activities.resilience import Resilience, service_policy
from activities.samples import WARNING, sample_answer
from core import tracing
from core.contracts import EXTERNAL_API_CALL
from core.errors import ErrorContext, ErrorType
from core.redaction import REDACTED, redact_text
from core.redis_keys import cache_key
from core.settings import Settings
from core.step_outputs import ExternalApiOutput
from workflow_defs.services import (
    PreparedRequest,
    ServiceParamError,
    ServiceRegistry,
    ServiceVariant,
    build_request,
    get_dotted,
    resolve_hook,
)

__all__ = ["ExternalApiActivities", "ExternalApiInput", "ExternalApiOutput"]

log = logging.getLogger(__name__)

_STATUS_SUGGESTIONS = {
    ErrorType.AUTH_ERROR: "check the service's API key and that the API is enabled for it",
    ErrorType.RATE_LIMITED: "lower the request rate or raise the quota; Temporal retries it",
    ErrorType.UPSTREAM_NOT_FOUND: "check the identifiers passed to the step",
    ErrorType.UPSTREAM_ERROR: "the service failed; Temporal retries it",
}


@dataclass
class _Call:
    input: ExternalApiInput
    variant: ServiceVariant
    request: PreparedRequest
    base_url: str
    key: str | None

    @property
    def what(self) -> str:
        return f"{self.input.service}.{self.input.operation}"

    @property
    def details(self) -> dict[str, Any]:
        return {"service": self.input.service, "operation": self.input.operation}

    def scrub(self, text: str) -> str:
        return redact_text(text, extra_secrets=[self.key] if self.key else (), truncate=False)


class ExternalApiActivities:
    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient,
        registry: ServiceRegistry,
        cache: ResponseCache,
        resilience: Resilience | None = None,
    ) -> None:
        self.settings = settings
        self.http = http
        self.registry = registry
        self.cache = cache
        # None: no rate limits or breakers (unit tests); the worker passes its shared one.
        self.resilience = resilience
        _guard_httpx_log()

    @activity.defn(name=EXTERNAL_API_CALL)
    async def external_api_call(self, input: ExternalApiInput) -> ExternalApiOutput:
        tracing.step(
            input.step_id, "external_api", service=input.service, operation=input.operation
        )
        try:
            call = self._prepare(input)
        except _NoKey as missing:
            sample = self._sample(input, missing.env)
            if sample is None:
                raise missing.error from None
            return sample
        ttl = input.cache_ttl
        if ttl is None:
            ttl = self.registry.cache_ttl(input.service, input.operation)
        key = cache_key(
            input.service,
            input.operation,
            {"variant": call.variant.name, "base_url": call.base_url, **call.request.model_dump()},
        )
        if ttl > 0:
            hit = await self.cache.get(key)
            if isinstance(hit, dict) and "data" in hit:
                log.info("external_api %s: cache hit", call.what)
                _count_cache(input.service, "hit")
                return self._output(call, hit["data"], int(hit.get("status_code", 200)), True)
            _count_cache(input.service, "miss")
        status, data = await self._guarded_send(call)
        if ttl > 0:
            await self.cache.set(key, {"data": data, "status_code": status}, ttl)
        return self._output(call, data, status, False)

    # -- preparing ------------------------------------------------------------------------

    def _prepare(self, input: ExternalApiInput) -> _Call:
        if not self.registry.has(input.service, input.operation):
            raise _unknown(self.registry, input)
        service = self.registry.get(input.service)
        variant_name = self._env(service.variant_env) if service.variant_env else None
        try:
            variant = service.variant(variant_name)
        except LookupError as exc:
            raise _config(input, str(exc), service.variant_env) from None
        try:
            request = build_request(
                self.registry,
                input.service,
                input.operation,
                input.params,
                api_variant=variant.name,
            )
        except ServiceParamError as exc:
            raise ErrorContext.of(
                ErrorType.VALIDATION_ERROR,
                str(exc),
                retryable=False,
                step_id=input.step_id,
                details={
                    "service": input.service,
                    "operation": input.operation,
                    "inputs": input.params,
                    "suggestions": ["fix the step's parameters in the workflow definition"],
                },
            ).to_application_error() from None
        key = None
        if variant.auth is not None:
            key = next((v for v in map(self._env, variant.auth.env) if v), None)
            if key is None:
                names = " or ".join(variant.auth.env)
                raise _NoKey(
                    _config(input, f"{input.service} needs an API key: set {names}", names),
                    names,
                )
        base_url = self._env(variant.base_url_env) if variant.base_url_env else None
        return _Call(input, variant, request, base_url or variant.base_url, key)

    def _sample(self, input: ExternalApiInput, env: str) -> ExternalApiOutput | None:
        """Development only: a shipped service without its key answers with sample data."""
        if self.settings.environment != "development":
            return None
        data = sample_answer(input.service, input.operation, input.params)
        if data is None:
            return None
        note = WARNING.format(env=env, service=input.service, operation=input.operation)
        log.warning("external_api %s.%s: %s", input.service, input.operation, note)
        return ExternalApiOutput(
            data=data,
            service=input.service,
            operation=input.operation,
            cached=False,
            status_code=200,
            attempt=current_attempt() or 1,
            warnings=[note],
        )

    def _env(self, name: str) -> str | None:
        """An env setting through Settings when it has the field, else the raw environment.

        Registry entries added by users name env vars Settings doesn't know about.
        """
        field = name.lower()
        value = (
            getattr(self.settings, field)
            if field in type(self.settings).model_fields
            else os.environ.get(name)
        )
        value = value.strip() if isinstance(value, str) else value
        return str(value) if value else None

    # -- sending --------------------------------------------------------------------------

    async def _guarded_send(self, call: _Call) -> tuple[int, Any]:
        if self.resilience is None:
            return await self._send(call)
        limit, breaker = service_policy(self.registry.get(call.input.service))
        async with self.resilience.guard(
            f"service:{call.input.service}",
            rate_limit=limit,
            breaker=breaker,
            details={**call.details, "step_id": call.input.step_id},
        ):
            return await self._send(call)

    async def _send(self, call: _Call) -> tuple[int, Any]:
        req = call.request
        query = dict(req.query)
        headers = dict(req.headers_without_auth)
        auth = call.variant.auth
        if auth is not None and call.key:
            if auth.in_ == "query":
                query[auth.name] = call.key
            else:
                headers[auth.name] = auth.prefix + call.key
        try:
            resp = await self.http.request(
                req.method,
                call.base_url.rstrip("/") + req.path,
                params=query or None,
                json=req.json_body,
                headers=headers,
                timeout=httpx.Timeout(call.input.timeout_seconds),
            )
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            env = call.variant.base_url_env
            raise _config(
                call.input,
                call.scrub(f"{call.what}: the base URL is not usable: {exc}"),
                env,
            ) from None
        except httpx.HTTPError as exc:
            raise error_for_transport(
                _scrubbed(exc, call), what=call.what, details=call.details
            ) from None
        log.info("external_api %s: HTTP %s", call.what, resp.status_code)
        if not 200 <= resp.status_code < 300:
            raise error_for_status(
                resp.status_code,
                headers=resp.headers,
                body=call.scrub(_error_text(call.variant, resp)),
                what=call.what,
                details=call.details,
            )
        if _no_content(call.variant, resp):
            # A DELETE (or PUT) answered without a body: success, and the output's data is null.
            return resp.status_code, None
        try:
            data = resp.json()
        except ValueError:
            raise _output_invalid(call, resp, "a body that is not JSON") from None
        self._check_status(call, data, resp.status_code)
        if call.variant.response_hook:
            try:
                data = resolve_hook(call.variant.response_hook)(call.input.operation, data)
            except ValueError as exc:
                raise _output_invalid(call, resp, str(exc)) from None
        return resp.status_code, _without_secret(data, call.key)

    def _check_status(self, call: _Call, data: Any, status_code: int) -> None:
        check = call.variant.status_check
        if check is None:
            return
        status = get_dotted(data, check.field)
        rule = check.rule_for(status)
        if rule is None:
            return
        kind = ErrorType(rule.type)
        message = f"{call.what} answered {check.field}={status}"
        detail = get_dotted(data, check.message_field) if check.message_field else None
        if detail:
            message += f": {detail}"
        raise ErrorContext.of(
            kind,
            call.scrub(message),
            retryable=rule.retryable,
            attempt=current_attempt(),
            step_id=call.input.step_id,
            details={
                **call.details,
                "status_code": status_code,
                "suggestions": [_STATUS_SUGGESTIONS.get(kind, "check the request parameters")],
            },
        ).to_application_error()

    def _output(self, call: _Call, data: Any, status: int, cached: bool) -> ExternalApiOutput:
        return ExternalApiOutput(
            data=data,
            service=call.input.service,
            operation=call.input.operation,
            cached=cached,
            status_code=status,
            attempt=current_attempt() or 1,
        )


def _no_content(variant: ServiceVariant, resp: httpx.Response) -> bool:
    """204, or an empty 2xx body from a service whose answers need no status check or hook
    (those always carry a body, so an empty one stays an OUTPUT_INVALID)."""
    if resp.status_code == 204:
        return True
    plain = variant.status_check is None and not variant.response_hook
    return plain and not resp.content.strip()


def _error_text(variant: ServiceVariant, resp: httpx.Response) -> str:
    """The service's own error message when its error body has one, else the raw body."""
    spec = variant.error_body
    if spec is not None and spec.message:
        try:
            body = resp.json()
        except ValueError:
            body = None
        message = get_dotted(body, spec.message)
        if isinstance(message, str) and message:
            code = get_dotted(body, spec.code) if spec.code else None
            return f"{message} (code {code})" if code is not None else message
    return resp.text


def _without_secret(data: Any, key: str | None) -> Any:
    """Drop the key from a response that echoes it; outputs land in Temporal history."""
    if not key or key not in json.dumps(data, default=str):
        return data
    if isinstance(data, dict):
        return {k: _without_secret(v, key) for k, v in data.items()}
    if isinstance(data, list):
        return [_without_secret(v, key) for v in data]
    return data.replace(key, REDACTED) if isinstance(data, str) else data


def _scrubbed(exc: httpx.HTTPError, call: _Call) -> httpx.HTTPError:
    text = call.scrub(str(exc))
    try:
        return type(exc)(text)
    except TypeError:
        cls = (
            httpx.TimeoutException
            if isinstance(exc, httpx.TimeoutException)
            else httpx.TransportError
        )
        return cls(text)


class _NoKey(Exception):
    """The service's key is not set: `error` is the CONFIG_ERROR to raise without a sample."""

    def __init__(self, error: ApplicationError, env: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.env = env


def _unknown(registry: ServiceRegistry, input: ExternalApiInput) -> ApplicationError:
    if input.service in registry.services:
        known = sorted(registry.get(input.service).operations)
        message = f"unknown operation {input.service}.{input.operation}"
    else:
        known = registry.names()
        message = f"unknown service {input.service!r}"
    return ErrorContext.of(
        ErrorType.VALIDATION_ERROR,
        f"{message}; known: {', '.join(known)}",
        retryable=False,
        step_id=input.step_id,
        details={
            "service": input.service,
            "operation": input.operation,
            "suggestions": ["add it to workflow_defs/services.json or fix the step's config"],
        },
    ).to_application_error()


def _config(input: ExternalApiInput, message: str, env: str | None) -> ApplicationError:
    return ErrorContext.of(
        ErrorType.CONFIG_ERROR,
        message,
        retryable=False,
        step_id=input.step_id,
        details={
            "service": input.service,
            "operation": input.operation,
            "suggestions": [f"set {env} in the worker's environment"] if env else [],
        },
    ).to_application_error()


def _output_invalid(call: _Call, resp: httpx.Response, why: str) -> ApplicationError:
    return ErrorContext.of(
        ErrorType.OUTPUT_INVALID,
        call.scrub(f"{call.what} returned HTTP {resp.status_code} with {why}"),
        attempt=current_attempt(),
        step_id=call.input.step_id,
        details={**call.details, "status_code": resp.status_code},
    ).to_application_error()


class _RedactFilter(logging.Filter):
    """httpx logs every request URL at INFO, and legacy Google/WeatherAPI keys ride in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        record.msg, record.args = redact_text(message, truncate=False), None
        return True


def _guard_httpx_log() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactFilter) for f in logger.filters):
        logger.addFilter(_RedactFilter())


def _count_cache(service: str, result: str) -> None:
    """Cache hits/misses as a Temporal SDK metric: exported with the worker's other metrics
    when WORKER_METRICS_PORT is set (no-op otherwise)."""
    try:
        meter = activity.metric_meter()
    except RuntimeError:
        return  # outside a worker (unit tests)
    meter.create_counter(
        "llmflow_cache_requests", "external_api cache lookups by result (hit|miss)"
    ).add(1, {"service": service, "result": result})
