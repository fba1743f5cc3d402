"""OpenTelemetry tracing (core/tracing.py): one job through the real gateway, worker and dev
server is one trace, from POST /api/v1/jobs to the provider's HTTP call, with no key and no
prompt in it unless LLMFLOW_TRACE_CONTENT asks for the prompt."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor

from core import tracing
from core.settings import Settings
from core.temporal import connect
from tests import harness
from tests.api_server import gateway
from tests.conftest import OPENROUTER_KEY, PLACES_KEY, WEATHER_KEY
from tests.fakes.http_server import FakeHTTPServer, Response
from tests.fakes.llm_wire import openai_chat
from tests.test_api_jobs import poll
from worker.app import build_worker, worker_resources

CHAT = "/openrouter/api/v1/chat/completions"
KEYS = (OPENROUTER_KEY, PLACES_KEY, WEATHER_KEY)
TOPIC = "zebra crossings in fog"  # only in the prompt: must not appear in a span by default


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    tracing.uninstall()


def everything_recorded(span: ReadableSpan) -> str:
    """Every string a span carries out of the process."""
    parts: list[Any] = [span.name, dict(span.attributes or {}), span.status.description]
    parts += [(e.name, dict(e.attributes or {})) for e in span.events]
    return json.dumps(parts, default=str)


def hex_id(value: int) -> str:
    return format(value, "032x")


async def run_quickstart(
    exporter: InMemorySpanExporter,
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
) -> tuple[dict[str, Any], list[ReadableSpan]]:
    reply = {"title": "Fog", "points": ["Slow down", "Use low beams", "Keep your distance"]}
    upstream.route(
        "POST", CHAT, openai_chat(json.dumps(reply), prompt_tokens=50, completion_tokens=20)
    )
    traced = await connect(settings)  # the gateway's client, with the TracingInterceptor
    assert any(isinstance(i, TracingInterceptor) for i in traced.config()["interceptors"])
    # The worker on the plain test client: build_worker adds the interceptor itself.
    async with harness.running_worker(temporal_client, settings, engine):
        async with gateway(settings, engine=engine, temporal_client=traced) as api:
            resp = await api.post(
                "/api/v1/jobs", json={"workflow_name": "quickstart", "input_data": {"topic": TOPIC}}
            )
            assert resp.status_code == 202, resp.text
            job = await poll(api, resp.json()["job_id"])
            # Another gateway knows it from the run's memo.
            assert tracing._active is not None
            tracing._active.job_trace_ids.clear()
            again = (await api.get(f"/api/v1/jobs/{job['job_id']}")).json()
            assert again["trace_id"] == job["trace_id"] and job["trace_id"]
    assert job["status"] == "completed", job
    return job, list(exporter.get_finished_spans())


async def test_one_job_is_one_trace_from_the_gateway_to_the_provider_call(
    exporter: InMemorySpanExporter,
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
) -> None:
    tracing.install(exporter, settings)
    job, spans = await run_quickstart(exporter, temporal_client, settings, engine, upstream)

    post = next(s for s in spans if s.name == "POST /api/v1/jobs")
    assert post.context is not None and post.parent is None  # the root: no caller's trace
    trace_id = post.context.trace_id
    assert job["trace_id"] == hex_id(trace_id)

    in_trace = [s for s in spans if s.context is not None and s.context.trace_id == trace_id]
    names = {s.name for s in in_trace}
    for expected in (
        "POST /api/v1/jobs",
        "StartWorkflow:InterpreterWorkflow",
        "RunWorkflow:InterpreterWorkflow",
        "StartActivity:llm_call",
        "RunActivity:llm_call",
        "POST",  # the provider call
    ):
        assert expected in names, sorted(names)
    # Every span of this job's run, on the worker too, is in that one trace.
    of_job = [s for s in spans if (s.attributes or {}).get("temporalWorkflowID") == job["job_id"]]
    assert of_job and all(s.context and s.context.trace_id == trace_id for s in of_job)
    # Parent links are intact: each span but the root has its parent in the trace.
    by_id = {s.context.span_id: s for s in in_trace if s.context is not None}
    for span in in_trace:
        if span is not post:
            assert span.parent is not None and span.parent.span_id in by_id, span.name

    def parent(span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None
        return by_id[span.parent.span_id]

    start = next(s for s in in_trace if s.name == "StartWorkflow:InterpreterWorkflow")
    run = next(s for s in in_trace if s.name == "RunWorkflow:InterpreterWorkflow")
    activity = next(s for s in in_trace if s.name == "RunActivity:llm_call")
    call = next(s for s in in_trace if s.name == "POST" and parent(s) is activity)
    # Temporal's interceptor hangs the workflow's spans (zero-length RunWorkflow, StartActivity)
    # under the client's StartWorkflow span.
    assert parent(start) is post and parent(run) is start
    assert parent(activity).name == "StartActivity:llm_call" and parent(parent(activity)) is start
    # Nothing else was traced but the polls, each a request of its own.
    assert {s.name for s in spans if s not in in_trace} == {"GET /api/v1/jobs/{job_id}"}

    attrs = dict(activity.attributes or {})
    assert attrs["llmflow.step_id"] == "explain" and attrs["llmflow.step_type"] == "llm"
    assert attrs["gen_ai.provider.name"] == "openrouter" and attrs["gen_ai.request.model"]
    assert attrs["gen_ai.usage.input_tokens"] == 50
    assert attrs["gen_ai.usage.output_tokens"] == 20
    assert attrs["llmflow.total_tokens"] == 70
    assert attrs["llmflow.status_code"] == 200
    call_attrs = dict(call.attributes or {})
    assert call_attrs["llmflow.step_id"] == "explain"
    assert call_attrs["gen_ai.provider.name"] == "openrouter"
    assert call_attrs.get("http.status_code", call_attrs.get("http.response.status_code")) == 200

    # No key and no prompt anywhere, by default.
    for span in spans:
        recorded = everything_recorded(span)
        assert TOPIC not in recorded and "Never invent" not in recorded, span.name
        for key in KEYS:
            assert key not in recorded, span.name


async def test_trace_content_puts_the_prompt_on_the_llm_span(
    exporter: InMemorySpanExporter,
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
) -> None:
    tracing.install(exporter, settings.model_copy(update={"llmflow_trace_content": True}))
    _, spans = await run_quickstart(exporter, temporal_client, settings, engine, upstream)
    activity = next(s for s in spans if s.name == "RunActivity:llm_call")
    prompt = str((activity.attributes or {})["llmflow.prompt"])
    assert TOPIC in prompt and "Never invent" in prompt
    assert "Slow down" in str((activity.attributes or {})["llmflow.reply"])
    for span in spans:
        for key in KEYS:
            assert key not in everything_recorded(span), span.name


async def test_query_keys_of_outbound_calls_are_never_recorded(
    settings: Settings, upstream: FakeHTTPServer
) -> None:
    upstream.route("GET", "/maps/api/place/nearbysearch/json", Response(body={"results": []}))
    url = f"{upstream.url}/maps/api/place/nearbysearch/json"
    for content in (False, True):
        exporter = InMemorySpanExporter()
        tracing.install(exporter, settings, trace_content=content)
        async with httpx.AsyncClient() as client:
            tracing.instrument_httpx(client)
            resp = await client.get(url, params={"location": "52.1,4.3", "key": PLACES_KEY})
            assert resp.status_code == 200
        tracing.uninstall()
        (span,) = exporter.get_finished_spans()
        recorded = everything_recorded(span)
        assert PLACES_KEY not in recorded and "key=[REDACTED]" in recorded
        # Query values are content: only with LLMFLOW_TRACE_CONTENT.
        assert ("52.1" in recorded) is content


async def test_every_attribute_is_redacted_on_the_way_out(
    exporter: InMemorySpanExporter, settings: Settings
) -> None:
    provider = tracing.install(exporter, settings)
    with provider.get_tracer("test").start_as_current_span("x") as span:
        span.set_attribute("http.request.header.authorization", "Bearer abcdefgh12345678")
        span.set_attribute("note", f"echoed {OPENROUTER_KEY.upper()} back")
        span.add_event("exception", {"exception.message": f"GET /x?api_key={WEATHER_KEY}"})
    (done,) = exporter.get_finished_spans()
    recorded = everything_recorded(done)
    assert "abcdefgh12345678" not in recorded and OPENROUTER_KEY.upper() not in recorded
    assert WEATHER_KEY not in recorded and recorded.count("[REDACTED]") == 3


async def test_tracing_off_changes_nothing(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    tracing.uninstall()
    assert settings.otel_exporter_otlp_endpoint is None
    assert not tracing.setup(settings) and not tracing.enabled()
    assert (
        tracing.client_interceptors() == [] and tracing.worker_interceptors(temporal_client) == []
    )
    assert tracing.job_memo() == {} and tracing.current_trace_id() is None
    tracing.step("s", "llm")  # no-ops
    tracing.llm_call("openrouter", "m")
    client = await connect(settings)
    assert client.config()["interceptors"] == []
    async with worker_resources(settings, engine=engine) as res:
        assert not getattr(res.http, "_is_instrumented_by_opentelemetry", False)
        worker = build_worker(temporal_client, settings, res)
        assert not any(isinstance(i, TracingInterceptor) for i in worker.config()["interceptors"])


def test_the_endpoint_turns_it_on_with_otlp_http(settings: Settings) -> None:
    on = settings.model_copy(update={"otel_exporter_otlp_endpoint": "http://127.0.0.1:9/"})
    try:
        assert tracing.setup(on, "llmflow-test") and tracing.enabled()
        assert tracing.setup(on)  # idempotent: the first call decides
        assert len(tracing.client_interceptors()) == 1
    finally:
        tracing.uninstall()
    assert not tracing.enabled()


async def test_the_trace_id_is_read_from_the_memo_once(exporter: InMemorySpanExporter) -> None:
    tracing.install(exporter)
    reads: list[str] = []

    def reader(job_id: str, answer: Any) -> Any:
        async def read() -> Any:
            reads.append(job_id)
            if isinstance(answer, Exception):
                raise answer
            return answer

        return read

    trace_id = "0af7651916cd43dd8448eb211c80319c"
    for _ in range(2):
        assert await tracing.job_trace_id("a", reader("a", {"trace_id": trace_id})) == trace_id
        assert await tracing.job_trace_id("b", reader("b", {"owner": "x"})) is None
        assert await tracing.job_trace_id("gone", reader("gone", LookupError("no run"))) is None
        # Temporal down: no answer now, and no second try for a while.
        assert await tracing.job_trace_id("c", reader("c", RuntimeError("down"))) is None
    assert reads == ["a", "b", "gone", "c"]
