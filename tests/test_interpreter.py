"""The interpreter on a real Temporal dev server, with outside services faked at the wire level."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError

from core.contracts import Progress
from core.db import get_job
from core.settings import Settings
from tests import harness
from tests.conftest import OPENROUTER_KEY
from tests.fakes.http_server import FakeHTTPServer, Response
from tests.fakes.llm_wire import openai_chat, openai_error

CHAT = "/openrouter/api/v1/chat/completions"
WEATHER = "/weather/v1/current.json"


def llm_step(step_id: str = "ask", **extra: Any) -> dict[str, Any]:
    step = {
        "id": step_id,
        "type": "llm",
        "config": {"model": "openai/gpt-4o-mini", "prompt_text": "Say hi to ${input.name}"},
    }
    step.update(extra)
    return step


def weather_step(step_id: str = "weather", **extra: Any) -> dict[str, Any]:
    step = {
        "id": step_id,
        "type": "external_api",
        "config": {
            "service": "weatherapi",
            "method": "current",
            "parameters": {"q": "Paris"},
            "cache_ttl": 0,
        },
        "retry": {"max_retries": 4, "initial_delay": 0.1, "max_delay": 0.2},
    }
    step.update(extra)
    return step


def definition(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "t", "version": "1.0.0", "steps": list(steps), **extra}


async def test_sequential_run_records_every_step_and_mirrors(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", CHAT, openai_chat("Hello, Ada!", prompt_tokens=12, completion_tokens=4))
    defn = definition(
        llm_step(outputs=["greeting"]),
        {
            "id": "shout",
            "type": "transform",
            "config": {
                "operation": "map",
                "input": ["${steps.ask.greeting}"],
                "config": {"expression": "item.upper()"},
            },
        },
        output={"text": "${steps.shout.output[0]}", "tokens": "${steps.ask.usage.total_tokens}"},
    )
    async with harness.running_worker(temporal_client, settings, engine):
        handle = await harness.start(
            temporal_client, settings, harness.load(defn, settings), {"name": "Ada"}
        )
        result = await handle.result()
        progress = await handle.query("progress", result_type=Progress)
        desc = await handle.describe()

    assert result.status == "completed"
    assert result.output == {"text": "HELLO, ADA!", "tokens": 16}
    ask = result.steps["ask"]
    assert ask.status == "completed" and ask.attempts == 1 and ask.tokens == 16
    assert ask.output["content"] == "Hello, Ada!"
    assert result.metadata.total_tokens == 16
    sent = upstream.requests_to(CHAT)[0].json()
    assert sent["messages"][-1]["content"] == "Say hi to Ada"
    assert progress.completed_steps == 2 and progress.steps == {
        "ask": "completed",
        "shout": "completed",
    }
    attrs = {p.key.name: p.value for p in desc.typed_search_attributes}
    assert attrs["JobStatus"] == "completed" and attrs["WorkflowName"] == "t"

    row = get_job(engine, handle.id)
    assert row is not None and row.status == "completed"
    assert row.output == result.output
    assert row.job_metadata["steps"][0]["id"] == "ask"


async def test_when_false_skips_and_continue_records_error(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route(
        "GET",
        WEATHER,
        Response(400, {"error": {"code": 1006, "message": "No matching location found."}}),
    )
    defn = definition(
        weather_step(error_mode="continue", default={"data": {"temp_c": None}}),
        llm_step("skipped_llm", when="steps.weather.status == 'completed'"),
        {
            "id": "after",
            "type": "transform",
            "config": {
                "operation": "coalesce",
                "config": {
                    "values": [
                        "${steps.weather.data.temp_c}",
                        "${steps.skipped_llm.output}",
                        "fallback",
                    ]
                },
            },
        },
    )
    async with harness.running_worker(temporal_client, settings, engine):
        result = await harness.run(
            temporal_client, settings, harness.load(defn, settings), {"name": "x"}
        )

    assert result.status == "completed"
    weather = result.steps["weather"]
    assert weather.status == "failed" and weather.attempts == 1  # 400 is not retried
    assert weather.error is not None and weather.error["type"] == "UPSTREAM_REJECTED"
    assert "No matching location found" in weather.error["message"]
    assert weather.output == {"data": {"temp_c": None}}
    assert result.steps["skipped_llm"].status == "skipped"
    assert upstream.requests_to(CHAT) == []
    assert result.output == "fallback"


async def test_fail_mode_fails_the_job_with_step_error(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", CHAT, openai_error(401, f"Incorrect API key provided: {OPENROUTER_KEY}"))
    defn = definition(llm_step(), llm_step("never"))
    async with harness.running_worker(temporal_client, settings, engine):
        handle, failure = await harness.run_failing(
            temporal_client, settings, harness.load(defn, settings), {"name": "x"}
        )
        desc = await handle.describe()

    assert desc.status == WorkflowExecutionStatus.FAILED
    cause = failure.cause
    assert isinstance(cause, ApplicationError) and cause.non_retryable
    assert cause.type == "AUTH_ERROR"
    assert OPENROUTER_KEY not in str(cause) and OPENROUTER_KEY not in json.dumps(
        cause.details, default=str
    )
    assert len(upstream.requests_to(CHAT)) == 1  # non-retryable: one attempt only
    row = get_job(engine, handle.id)
    assert row is not None and row.status == "failed"
    assert (
        row.error is not None
        and row.error["step_id"] == "ask"
        and row.error["category"] == "CONFIG_ERROR"
    )
    assert OPENROUTER_KEY not in json.dumps(row.error) + json.dumps(row.job_metadata)
    assert [s["status"] for s in row.job_metadata["steps"]] == ["failed", "pending"]
    with engine.connect() as conn:
        alerts = conn.execute(
            text("SELECT level, source, message FROM alerts WHERE job_id = :j"), {"j": handle.id}
        ).all()
    # An auth failure is a deployment problem: ERROR level, and the key is not in it.
    assert [(a[0], a[1]) for a in alerts] == [("ERROR", "job")]
    assert "ask" in alerts[0][2] and OPENROUTER_KEY not in alerts[0][2]


async def test_retryable_errors_are_retried_with_attempt_count(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route(
        "GET",
        WEATHER,
        [
            Response(503, "busy"),
            Response(500, "oops"),
            Response(200, {"location": {"name": "Paris"}, "current": {"temp_c": 11}}),
        ],
    )
    defn = definition(weather_step())
    async with harness.running_worker(temporal_client, settings, engine):
        result = await harness.run(temporal_client, settings, harness.load(defn, settings))

    weather = result.steps["weather"]
    assert weather.status == "completed" and weather.attempts == 3
    assert weather.output["data"]["current"]["temp_c"] == 11
    assert len(upstream.requests_to(WEATHER)) == 3


async def test_retries_exhausted_fail_with_last_error(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("GET", WEATHER, Response(502, "bad gateway"))
    defn = definition(
        weather_step(retry={"max_retries": 2, "initial_delay": 0.1}, error_mode="continue")
    )
    async with harness.running_worker(temporal_client, settings, engine):
        result = await harness.run(temporal_client, settings, harness.load(defn, settings))
    weather = result.steps["weather"]
    assert weather.status == "failed" and weather.attempts == 3
    assert weather.error is not None and weather.error["retryable"] is True
    assert len(upstream.requests_to(WEATHER)) == 3


async def test_retry_after_is_honoured(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route(
        "POST",
        CHAT,
        [openai_error(429, "rate limited", headers={"Retry-After": "2"}), openai_chat("ok")],
    )
    defn = definition(llm_step(retry={"max_retries": 3, "initial_delay": 0.1, "max_delay": 0.1}))
    async with harness.running_worker(temporal_client, settings, engine):
        handle = await harness.start(
            temporal_client, settings, harness.load(defn, settings), {"name": "x"}
        )
        result = await handle.result()
        history = await handle.fetch_history()

    assert result.steps["ask"].attempts == 2
    # The retry waited for Retry-After (2s), not the policy's 0.1s: read the gap from history.
    scheduled = [
        e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")
    ]
    completed = [
        e for e in history.events if e.HasField("activity_task_completed_event_attributes")
    ]
    llm_scheduled = [
        e
        for e in scheduled
        if e.activity_task_scheduled_event_attributes.activity_type.name == "llm_call"
    ]
    assert llm_scheduled
    llm_done = [
        e
        for e in completed
        if e.activity_task_completed_event_attributes.scheduled_event_id
        == llm_scheduled[0].event_id
    ]
    assert len(upstream.requests_to(CHAT)) == 2
    gap = llm_done[0].event_time.ToDatetime() - llm_scheduled[0].event_time.ToDatetime()
    assert gap.total_seconds() >= 1.9


async def test_workflow_timeout_marks_job_timed_out(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    slow = llm_step(
        config={"provider": "mock", "model": "m", "prompt_text": "hi", "mock_latency_ms": 20000}
    )
    defn = definition(slow, timeout_seconds=2)
    async with harness.running_worker(temporal_client, settings, engine):
        handle, failure = await harness.run_failing(
            temporal_client, settings, harness.load(defn, settings)
        )
    assert isinstance(failure.cause, ApplicationError) and failure.cause.type == "WORKFLOW_TIMEOUT"
    row = get_job(engine, handle.id)
    assert row is not None and row.status == "timed_out"


@pytest.mark.parametrize("mode", ["fail", "retry"])
async def test_transform_error_fails_job_in_fail_modes(
    mode: str, temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    defn = definition(
        {
            "id": "bad",
            "type": "transform",
            "error_mode": mode,
            "config": {"operation": "to_number", "input": "not a number"},
        }
    )
    async with harness.running_worker(temporal_client, settings, engine):
        _, failure = await harness.run_failing(
            temporal_client, settings, harness.load(defn, settings)
        )
    assert isinstance(failure.cause, ApplicationError) and failure.cause.type == "TRANSFORM_ERROR"


async def test_missing_provider_key_in_production_is_a_config_error(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    prod = settings.model_copy(update={"environment": "production", "openrouter_api_key": None})
    defn = definition(llm_step())
    async with harness.running_worker(temporal_client, prod, engine):
        handle, failure = await harness.run_failing(
            temporal_client, prod, harness.load(defn, prod), {"name": "x"}
        )
    cause = failure.cause
    assert (
        isinstance(cause, ApplicationError) and cause.type == "CONFIG_ERROR" and cause.non_retryable
    )
    assert "OPENROUTER_API_KEY" in str(cause)
    assert upstream.requests_to(CHAT) == []
    row = get_job(engine, handle.id)
    assert row is not None and row.error is not None and row.error["category"] == "CONFIG_ERROR"
    assert row.job_metadata["steps"][0]["attempts"] == 1


async def test_filter_condition_can_compare_items_with_run_input(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    defn = definition(
        {
            "id": "good",
            "type": "transform",
            "config": {
                "operation": "filter",
                "input": "${input.places}",
                "config": {"condition": "item.rating >= ${input.min_rating}"},
            },
        }
    )
    places = [
        {"name": "a", "rating": 4.5},
        {"name": "b", "rating": 3.0},
        {"name": "c", "rating": 4.0},
    ]
    async with harness.running_worker(temporal_client, settings, engine):
        result = await harness.run(
            temporal_client,
            settings,
            harness.load(defn, settings),
            {"places": places, "min_rating": 4},
        )
    assert [p["name"] for p in result.output] == ["a", "c"]
