"""OpenTelemetry tracing: one trace per job, from the gateway's POST to each provider call.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (then spans go there over OTLP/HTTP), or a test
installs an exporter with `install()`. Off, every helper here returns after one `None` check
and nothing else changes: no interceptor, no instrumented client, no memo entry, no header in
any workflow history.

On, a process traces with its own TracerProvider (the global one is left alone):

- the gateway's requests (FastAPI instrumentation; `/health` and `/metrics` are left out);
- Temporal client calls, workflows and activities: Temporal's own `TracingInterceptor`, on the
  client (`client_interceptors`, used by `core.temporal.connect`) and on the worker
  (`worker_interceptors`); the trace context travels in Temporal headers, so the worker's spans
  join the trace the gateway's request started;
- outbound HTTP calls to LLM providers and services (the shared httpx client), with the step's
  id, type, provider/service and model;
- on the activity span of an llm step: provider, model, token counts and the last HTTP status.

What is never recorded: API keys and other secrets (every attribute, event and status goes
through core/redaction.py before export, with this process's configured keys added), query
parameter values of outbound calls (where keys such as Google's `?key=` live), request and
response bodies, headers, prompts and replies. With LLMFLOW_TRACE_CONTENT=true, prompts,
replies and query values are recorded too (secrets still redacted).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.redaction import REDACTED, SECRET_ENV_VARS, _split_values, redact, redact_text

if TYPE_CHECKING:
    from fastapi import FastAPI
    from httpx import AsyncClient
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.trace import Span
    from temporalio.client import Client

    from core.settings import Settings

log = logging.getLogger(__name__)

# Gateway paths not traced unless OTEL_PYTHON_FASTAPI_EXCLUDED_URLS says otherwise: probes and
# scrapes would drown the job traces.
DEFAULT_EXCLUDED_URLS = "/health,/metrics"
# Job ids whose trace id this gateway knows, so GET /jobs/{id} asks Temporal's memo once.
MAX_KNOWN_JOBS = 10_000
MEMO_READ_TIMEOUT = 1.0
MEMO_RETRY_SECONDS = 30.0
_URL_ATTRIBUTES = ("http.url", "url.full")


@dataclass
class _Tracing:
    provider: TracerProvider
    trace_content: bool
    secrets: tuple[str, ...]
    interceptor: Any  # temporalio.contrib.opentelemetry.TracingInterceptor
    current_span: Callable[[], Span]
    job_trace_ids: OrderedDict[str, str | None] = field(default_factory=OrderedDict)
    memo_retry_at: dict[str, float] = field(default_factory=dict)


_active: _Tracing | None = None


@dataclass
class _Step:
    """The activity span of the step being run, and what its HTTP calls carry too."""

    span: Span
    attributes: dict[str, str]


_STEP: ContextVar[_Step | None] = ContextVar("llmflow_trace_step", default=None)


def enabled() -> bool:
    return _active is not None


# -- turning it on ---------------------------------------------------------------------------


def setup(settings: Settings, service_name: str = "llmflow") -> bool:
    """Turn tracing on for this process when OTEL_EXPORTER_OTLP_ENDPOINT is set. Idempotent:
    the first call decides (a gateway and a worker in one process share one provider)."""
    if _active is not None:
        return True
    endpoint = (settings.otel_exporter_otlp_endpoint or "").strip()
    if not endpoint or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise RuntimeError(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the tracing packages are not installed: "
            "pip install 'llmflow[tracing]'"
        ) from exc
    # The generic variable names the collector; traces go to its /v1/traces. The signal's own
    # variable, when set, is a full URL the exporter reads itself.
    traces_url = None
    if not os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        traces_url = endpoint.rstrip("/") + "/v1/traces"
    exporter = OTLPSpanExporter(endpoint=traces_url)
    _start(settings, service_name, BatchSpanProcessor(_redacting(exporter)))
    log.info("tracing on: spans to %s", traces_url or "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return True


def install(
    exporter: SpanExporter,
    settings: Settings | None = None,
    *,
    trace_content: bool | None = None,
    service_name: str = "llmflow",
) -> TracerProvider:
    """Tests: trace into `exporter` (e.g. InMemorySpanExporter), spans exported as they end,
    through the same redaction as in production. `uninstall()` turns it off again."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    uninstall()
    state = _start(settings, service_name, SimpleSpanProcessor(_redacting(exporter)))
    if trace_content is not None:
        state.trace_content = trace_content
    return state.provider


def uninstall() -> None:
    global _active
    state, _active = _active, None
    if state is not None:
        state.provider.shutdown()


def _start(settings: Settings | None, service_name: str, processor: Any) -> _Tracing:
    global _active
    import opentelemetry.trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from temporalio.contrib.opentelemetry import TracingInterceptor

    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(processor)
    _active = _Tracing(
        provider=provider,
        trace_content=bool(settings and settings.llmflow_trace_content),
        secrets=_configured_secrets(settings),
        interceptor=TracingInterceptor(provider.get_tracer("llmflow.temporal")),
        current_span=opentelemetry.trace.get_current_span,
    )
    return _active


def _configured_secrets(settings: Settings | None) -> tuple[str, ...]:
    """Keys loaded through these Settings: one set in code or `.env` is not in os.environ,
    where the redactor looks."""
    if settings is None:
        return ()
    values: list[str] = []
    for name in SECRET_ENV_VARS:
        values += _split_values(name, getattr(settings, name.lower(), None))
    return tuple(values)


# -- wiring: gateway, Temporal, httpx --------------------------------------------------------


def instrument_app(app: FastAPI) -> None:
    """Trace the gateway's requests (no-op when tracing is off)."""
    state = _active
    if state is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=state.provider,
        excluded_urls=os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", DEFAULT_EXCLUDED_URLS),
        exclude_spans=["receive", "send"],  # one span per request, not one per ASGI message
    )


def client_interceptors() -> list[Any]:
    """Interceptors for Client.connect: Temporal's TracingInterceptor when tracing is on."""
    state = _active
    return [state.interceptor] if state is not None else []


def worker_interceptors(client: Client) -> list[Any]:
    """The TracingInterceptor for a worker, unless its client has one already (the worker
    inherits the client's, and two would record every span twice)."""
    state = _active
    if state is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    if any(isinstance(i, TracingInterceptor) for i in client.config()["interceptors"]):
        return []
    return [state.interceptor]


def instrument_httpx(client: AsyncClient) -> None:
    """Trace the calls of the activities' shared client (no-op when tracing is off)."""
    state = _active
    if state is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(
        client,
        tracer_provider=state.provider,
        request_hook=_on_request,
        response_hook=_on_response,
    )


async def _on_request(span: Span, request: Any) -> None:
    state = _active
    if state is None or not span.is_recording():
        return
    # Query values go (keys travel there, and service inputs are content), names stay.
    url = _without_query_values(str(request.url), keep=state.trace_content)
    recorded = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        if key in recorded:
            span.set_attribute(key, url)
    step = _STEP.get()
    if step is not None:
        span.set_attributes(step.attributes)


async def _on_response(span: Span, request: Any, response: Any) -> None:
    step = _STEP.get()
    if step is not None and step.span.is_recording():
        step.span.set_attribute("llmflow.status_code", int(response.status_code))


def _without_query_values(url: str, *, keep: bool) -> str:
    base, sep, rest = url.partition("?")
    if not sep:
        return url
    if keep:
        return redact_text(url, truncate=False)
    query = rest.partition("#")[0]
    return base + "?" + "&".join(p.partition("=")[0] + "=" + REDACTED for p in query.split("&"))


# -- what steps add --------------------------------------------------------------------------


def step(step_id: str | None, step_type: str, **attributes: str) -> None:
    """Name the step on the current (activity) span; the step's HTTP calls carry it too."""
    state = _active
    if state is None:
        return
    span = state.current_span()
    attrs = {"llmflow.step_id": step_id or "", "llmflow.step_type": step_type}
    attrs.update({f"llmflow.{k}": v for k, v in attributes.items()})
    span.set_attributes(attrs)
    _STEP.set(_Step(span, attrs))


def llm_call(provider: str, model: str) -> None:
    """The provider and model about to be called (fallbacks change them)."""
    state = _active
    if state is None:
        return
    step = _STEP.get()
    if step is None:
        return
    attrs = {"gen_ai.provider.name": provider, "gen_ai.request.model": model}
    step.attributes.update(attrs)
    step.span.set_attributes(attrs)


def llm_result(step_input: Any, provider: str, model: str, usage: Any, result: Any) -> None:
    """What an llm step cost (an LlmCallInput, who answered, the summed LlmUsage, the last
    ChatResult), on its activity span; the prompt and reply only with LLMFLOW_TRACE_CONTENT."""
    state = _active
    if state is None:
        return
    attrs: dict[str, str | int] = {
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": int(usage.input_tokens),
        "gen_ai.usage.output_tokens": int(usage.output_tokens),
        "llmflow.total_tokens": int(usage.total_tokens),
    }
    if result.model:
        attrs["gen_ai.response.model"] = result.model
    if state.trace_content:
        content = {
            "prompt": step_input.prompt,
            "system_prompt": step_input.system_prompt,
            "reply": result.content,
        }
        attrs.update({f"llmflow.{k}": v for k, v in content.items() if v})
    state.current_span().set_attributes(attrs)


# -- the job's trace id ----------------------------------------------------------------------


def current_trace_id() -> str | None:
    """The current trace's id (32 hex digits), or None when tracing is off."""
    state = _active
    if state is None:
        return None
    ctx = state.current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def job_memo() -> dict[str, str]:
    """The memo entry that keeps a starting job's trace id ({} when tracing is off)."""
    trace_id = current_trace_id()
    return {"trace_id": trace_id} if trace_id is not None else {}


async def job_trace_id(
    job_id: str, read_memo: Callable[[], Awaitable[Mapping[str, Any]]]
) -> str | None:
    """A job's trace id, read from its run's memo once per gateway. A run Temporal does not
    have (LookupError) has none; Temporal slow or down costs a read at most MEMO_READ_TIMEOUT,
    and the next try waits MEMO_RETRY_SECONDS."""
    state = _active
    if state is None:
        return None
    known = state.job_trace_ids
    if job_id in known:
        known.move_to_end(job_id)
        return known[job_id]
    if state.memo_retry_at.get(job_id, 0.0) > time.monotonic():
        return None
    try:
        memo: Mapping[str, Any] = await asyncio.wait_for(read_memo(), MEMO_READ_TIMEOUT)
    except LookupError:
        memo = {}
    except Exception:
        if len(state.memo_retry_at) >= MAX_KNOWN_JOBS:
            state.memo_retry_at.clear()
        state.memo_retry_at[job_id] = time.monotonic() + MEMO_RETRY_SECONDS
        return None
    state.memo_retry_at.pop(job_id, None)
    trace_id = memo.get("trace_id")
    known[job_id] = trace_id if isinstance(trace_id, str) else None
    while len(known) > MAX_KNOWN_JOBS:
        known.popitem(last=False)
    return known[job_id]


# -- redaction on the way out ----------------------------------------------------------------


def _redacting(inner: SpanExporter) -> SpanExporter:
    """Wrap the real exporter: every span's attributes, events and status go through
    core/redaction.py (names, key shapes, configured keys) before they leave the process."""
    from opentelemetry.sdk.trace.export import SpanExporter

    class RedactingExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            state = _active
            secrets = state.secrets if state is not None else ()
            return inner.export([_redacted(s, secrets) for s in spans])

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return inner.force_flush(timeout_millis)

    return RedactingExporter()


def _clean(attributes: Mapping[str, Any] | None, secrets: tuple[str, ...]) -> dict[str, Any]:
    # Attribute values are str, bool, int, float or sequences of those: all survive redact().
    cleaned: dict[str, Any] = redact(dict(attributes or {}), extra_secrets=secrets, truncate=False)
    return cleaned


def _redacted(span: ReadableSpan, secrets: tuple[str, ...]) -> ReadableSpan:
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import Status

    status = span.status
    if status.description:
        status = Status(status.status_code, redact_text(status.description, extra_secrets=secrets))
    events = [Event(e.name, _clean(e.attributes, secrets), e.timestamp) for e in span.events]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_clean(span.attributes, secrets),
        events=events,
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
