"""The `llm_call` activity against wire-level fakes of OpenRouter, OpenAI, Anthropic and an
OpenAI-compatible server, plus the offline mock provider."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import jsonschema
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.http_errors import new_http_client
from activities.llm.activity import LlmActivities
from activities.llm.json_output import JsonReplyError, parse_json_reply
from activities.llm.models import LlmCallInput, LlmFallback
from activities.llm.pricing import cost_usd, price_for
from activities.llm.response_format import parse_response_format
from activities.llm.schema_sample import sample_for_schema
from core.settings import Settings
from core.step_outputs import LlmCallOutput, LlmUsage
from tests.fakes.http_server import FakeHTTPServer, Response
from tests.fakes.llm_wire import (
    anthropic_error,
    anthropic_message,
    openai_chat,
    openai_chat_body,
    openai_error,
)

OR_PATH = "/api/v1/chat/completions"
OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
COMPAT_PATH = "/compat/v1/chat/completions"
OR_KEY = "sk-or-test-0123456789abcdef"
OPENAI_KEY = "sk-openai-test-0123456789"
ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"

PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_routes(server: FakeHTTPServer) -> None:
    server.reset()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with new_http_client() as client:
        yield client


def make_settings(server: FakeHTTPServer, **overrides: Any) -> Settings:
    # Every key explicit so a developer's own environment or .env can't change the outcome.
    values: dict[str, Any] = {
        "environment": "test",
        "openrouter_base_url": server.url + "/api/v1",
        "openrouter_api_key": OR_KEY,
        "openai_base_url": server.url + "/v1",
        "openai_api_key": OPENAI_KEY,
        "anthropic_base_url": server.url,
        "anthropic_api_key": ANTHROPIC_KEY,
        "openai_compatible_base_url": None,
        "openai_compatible_api_key": None,
        "llm_default_provider": "openrouter",
        "llm_mock_latency_ms": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def run(
    settings: Settings,
    http: httpx.AsyncClient,
    env: ActivityEnvironment | None = None,
    *,
    heartbeat: float = 5.0,
    **fields: Any,
) -> LlmCallOutput:
    fields.setdefault("step_id", "summarize")
    fields.setdefault("model", "openai/gpt-4o-mini")
    fields.setdefault("prompt", "Summarize the weather in Paris. Keep it short.")
    activities = LlmActivities(settings, http, heartbeat_interval_seconds=heartbeat)
    return await (env or ActivityEnvironment()).run(activities.llm_call, LlmCallInput(**fields))


async def run_error(settings: Settings, http: httpx.AsyncClient, **fields: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as info:
        await run(settings, http, **fields)
    return info.value


# --- providers: success paths, what goes over the wire --------------------------------------


async def test_openrouter_success_sends_wire_format_and_prices_the_call(server, http):
    server.route(
        "POST",
        OR_PATH,
        openai_chat(
            "Mild and sunny.",
            model="anthropic/claude-3.5-sonnet",
            prompt_tokens=1000,
            completion_tokens=500,
        ),
    )
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=3)
    out = await run(
        make_settings(server),
        http,
        env,
        model="anthropic/claude-3.5-sonnet",
        system_prompt="You are terse.",
        temperature=0.2,
        max_tokens=300,
        top_p=0.9,
    )
    assert out.content == "Mild and sunny."
    assert out.provider == "openrouter"
    assert out.model == "anthropic/claude-3.5-sonnet"
    assert out.usage.model_dump() == {
        "input_tokens": 1000,
        "output_tokens": 500,
        "total_tokens": 1500,
    }
    # $3 / $15 per 1M tokens
    assert out.cost_usd == pytest.approx(1000 * 3 / 1e6 + 500 * 15 / 1e6)
    assert out.finish_reason == "stop"
    assert out.attempt == 3
    assert out.data is None
    assert out.warnings == []

    [req] = server.requests_to(OR_PATH)
    assert req.method == "POST"
    assert req.headers["authorization"] == f"Bearer {OR_KEY}"
    assert req.headers["x-title"] == "llmflow"
    assert req.headers["http-referer"].startswith("https://")
    body = req.json()
    assert body["model"] == "anthropic/claude-3.5-sonnet"
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Summarize the weather in Paris. Keep it short."},
    ]
    assert (body["temperature"], body["max_tokens"], body["top_p"]) == (0.2, 300, 0.9)
    assert "response_format" not in body


async def test_default_provider_comes_from_settings(server, http):
    server.route("POST", OPENAI_PATH, openai_chat("hi", model="gpt-4o-mini-2024-07-18"))
    out = await run(make_settings(server, llm_default_provider="openai"), http, model="gpt-4o-mini")
    assert out.provider == "openai"
    assert out.model == "gpt-4o-mini-2024-07-18"  # what the provider says it served
    [req] = server.requests_to(OPENAI_PATH)
    assert req.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert "x-title" not in req.headers
    # Priced by the requested id: 10 * 0.15 + 5 * 0.60 per 1M.
    assert out.cost_usd == pytest.approx((10 * 0.15 + 5 * 0.60) / 1e6)


async def test_openai_json_schema_request_and_parsed_data(server, http):
    reply = json.dumps({"name": "Ada", "age": 36, "tags": ["math"]})
    server.route("POST", OPENAI_PATH, openai_chat(reply))
    out = await run(
        make_settings(server),
        http,
        provider="openai",
        model="gpt-4o-mini",
        response_format={"json_schema": {"name": "person", "schema": PERSON_SCHEMA}},
    )
    assert out.data == {"name": "Ada", "age": 36, "tags": ["math"]}
    assert out.content == reply
    body = server.requests_to(OPENAI_PATH)[0].json()
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": PERSON_SCHEMA, "strict": False},
    }
    # json modes also say "JSON" in the system message (OpenAI requires it for json_object).
    assert body["messages"][0]["role"] == "system"
    assert "JSON" in body["messages"][0]["content"]


async def test_plain_json_mode_uses_json_object(server, http):
    server.route("POST", OR_PATH, openai_chat('Here you go:\n```json\n{"ok": true}\n```'))
    out = await run(make_settings(server), http, response_format="json")
    assert out.data == {"ok": True}
    body = server.requests_to(OR_PATH)[0].json()
    assert body["response_format"] == {"type": "json_object"}


async def test_openai_compatible_uses_step_base_url_without_key(server, http):
    server.route("POST", COMPAT_PATH, openai_chat("local answer", model="llama3.1:8b"))
    out = await run(
        make_settings(server),
        http,
        provider="openai_compatible",
        model="llama3.1:8b",
        base_url=server.url + "/compat/v1",
    )
    assert (out.content, out.provider) == ("local answer", "openai_compatible")
    [req] = server.requests_to(COMPAT_PATH)
    assert "authorization" not in req.headers
    assert req.json()["model"] == "llama3.1:8b"
    # Not in the price table: counted as free, and said so.
    assert out.cost_usd == 0.0
    assert any("no price known" in w for w in out.warnings)


async def test_openai_compatible_configured_server_gets_its_key(server, http):
    server.route("POST", COMPAT_PATH, openai_chat("ok"))
    settings = make_settings(
        server,
        openai_compatible_base_url=server.url + "/compat/v1",
        openai_compatible_api_key="local-secret-key-123",
    )
    await run(settings, http, provider="openai_compatible", model="qwen2.5")
    assert (
        server.requests_to(COMPAT_PATH)[0].headers["authorization"] == "Bearer local-secret-key-123"
    )


async def test_openai_compatible_key_not_sent_to_another_base_url(server, http):
    server.route("POST", "/elsewhere/chat/completions", openai_chat("ok"))
    settings = make_settings(
        server,
        openai_compatible_base_url=server.url + "/compat/v1",
        openai_compatible_api_key="local-secret-key-123",
    )
    out = await run(
        settings,
        http,
        provider="openai_compatible",
        model="qwen2.5",
        base_url=server.url + "/elsewhere",
    )
    assert "authorization" not in server.requests_to("/elsewhere/chat/completions")[0].headers
    assert any("OPENAI_COMPATIBLE_API_KEY not sent" in w for w in out.warnings)


async def test_anthropic_messages_wire_format(server, http):
    server.route(
        "POST",
        ANTHROPIC_PATH,
        anthropic_message(
            "Bonjour.", model="claude-3-5-haiku-20241022", input_tokens=2000, output_tokens=1000
        ),
    )
    out = await run(
        make_settings(server),
        http,
        provider="anthropic",
        model="claude-3-5-haiku-latest",
        system_prompt="Answer in French.",
        temperature=0.0,
    )
    assert out.content == "Bonjour."
    assert out.provider == "anthropic"
    assert out.finish_reason == "end_turn"
    assert out.usage.total_tokens == 3000
    assert out.cost_usd == pytest.approx(2000 * 0.80 / 1e6 + 1000 * 4.0 / 1e6)
    [req] = server.requests_to(ANTHROPIC_PATH)
    assert req.headers["x-api-key"] == ANTHROPIC_KEY
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in req.headers
    body = req.json()
    assert body["system"] == "Answer in French."
    assert body["max_tokens"] == 1024  # required by the API: defaulted
    assert body["temperature"] == 0.0
    assert body["messages"] == [
        {"role": "user", "content": "Summarize the weather in Paris. Keep it short."}
    ]


async def test_anthropic_json_schema_goes_into_system_prompt(server, http):
    server.route("POST", ANTHROPIC_PATH, anthropic_message('{"name": "Bo", "age": 3}'))
    out = await run(
        make_settings(server),
        http,
        provider="anthropic",
        model="claude-3-5-haiku-latest",
        max_tokens=200,
        system_prompt="Extract the person.",
        response_format={"type": "json_schema", "json_schema": {"schema": PERSON_SCHEMA}},
    )
    assert out.data == {"name": "Bo", "age": 3}
    body = server.requests_to(ANTHROPIC_PATH)[0].json()
    assert body["max_tokens"] == 200
    assert body["system"].startswith("Extract the person.")
    assert '"required": ["name", "age"]' in body["system"]
    assert "response_format" not in body


# --- failures → Temporal's retry decision ---------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [
        (400, "UPSTREAM_REJECTED", False),
        (401, "AUTH_ERROR", False),
        (403, "AUTH_ERROR", False),
        (404, "UPSTREAM_NOT_FOUND", False),
        (422, "UPSTREAM_REJECTED", False),
        (500, "UPSTREAM_ERROR", True),
        (502, "UPSTREAM_ERROR", True),
    ],
)
async def test_status_mapping(server, http, status, error_type, retryable):
    server.route("POST", OR_PATH, openai_error(status, "nope"))
    err = await run_error(make_settings(server), http)
    assert err.type == error_type
    assert err.non_retryable is (not retryable)
    assert f"HTTP {status}" in err.message
    assert err.details[0]["details"]["provider"] == "openrouter"


async def test_429_retry_after_becomes_next_retry_delay(server, http):
    server.route(
        "POST",
        OR_PATH,
        openai_error(429, "slow down", type_="rate_limit", headers={"Retry-After": "7"}),
    )
    err = await run_error(make_settings(server), http)
    assert err.type == "RATE_LIMITED"
    assert err.non_retryable is False
    assert err.next_retry_delay == timedelta(seconds=7)


async def test_anthropic_529_overloaded_is_retryable(server, http):
    server.route("POST", ANTHROPIC_PATH, anthropic_error(529, "overloaded_error", "Overloaded"))
    err = await run_error(
        make_settings(server), http, provider="anthropic", model="claude-3-5-haiku-latest"
    )
    assert err.type == "UPSTREAM_ERROR"
    assert err.non_retryable is False
    assert "overloaded_error" in err.message


async def test_timeout_is_retryable(server, http):
    server.route("POST", OR_PATH, Response(200, {"choices": []}, delay=1.0))
    err = await run_error(make_settings(server), http, request_timeout_seconds=0.2)
    assert err.type == "TIMEOUT"
    assert err.non_retryable is False


async def test_connection_refused_is_retryable(server, http):
    err = await run_error(
        make_settings(server, openrouter_base_url="http://127.0.0.1:9/api/v1"), http
    )
    assert err.type == "CONNECTION_ERROR"
    assert err.non_retryable is False


async def test_openrouter_error_object_in_a_200_is_mapped(server, http):
    server.route(
        "POST", OR_PATH, Response(200, {"error": {"code": 502, "message": "upstream died"}})
    )
    err = await run_error(make_settings(server), http)
    assert err.type == "UPSTREAM_ERROR"
    assert err.non_retryable is False


@pytest.mark.parametrize("key", ["plain-key-Zq9v7xUuT3", OR_KEY])
async def test_provider_echoing_the_key_does_not_leak_it(server, http, key):
    server.route(
        "POST",
        OR_PATH,
        openai_error(
            401, f"Incorrect API key provided: {key}. Bearer {key}", code="invalid_api_key"
        ),
    )
    err = await run_error(make_settings(server, openrouter_api_key=key), http)
    assert err.type == "AUTH_ERROR"
    assert "Incorrect API key provided" in err.message  # the body is shown, minus the key
    assert key not in err.message
    assert key not in str(err)
    assert key not in json.dumps(err.details)


async def test_unknown_provider_is_config_error(server, http):
    err = await run_error(make_settings(server), http, provider="cohere-ish")
    assert err.type == "CONFIG_ERROR"
    assert err.non_retryable is True
    assert server.requests == []


# --- missing keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("environment", ["production", "test"])
async def test_missing_key_outside_development_is_config_error(server, http, environment):
    settings = make_settings(server, environment=environment, openrouter_api_key=None)
    err = await run_error(settings, http)
    assert err.type == "CONFIG_ERROR"
    assert err.non_retryable is True
    assert "OPENROUTER_API_KEY" in err.message
    assert server.requests == []


async def test_missing_key_in_development_answers_with_mock_and_says_so(server, http):
    settings = make_settings(server, environment="development", openrouter_api_key=None)
    out = await run(settings, http, model="openai/gpt-4o-mini")
    assert out.provider == "mock"
    assert out.content.startswith("[mock:openai/gpt-4o-mini] ")
    assert any("OPENROUTER_API_KEY" in w and "mock" in w for w in out.warnings)
    assert out.cost_usd == 0.0
    assert server.requests == []


async def test_missing_base_url_for_openai_compatible_names_the_setting(server, http):
    err = await run_error(make_settings(server), http, provider="openai_compatible", model="x")
    assert err.type == "CONFIG_ERROR"
    assert "OPENAI_COMPATIBLE_BASE_URL" in err.message


# --- JSON repair loop -------------------------------------------------------------------------


async def test_repair_loop_fixes_invalid_json_and_sums_usage(server, http):
    server.route(
        "POST",
        OR_PATH,
        [
            openai_chat("Sure! {name: Ada", prompt_tokens=100, completion_tokens=10),
            openai_chat('{"name": "Ada"}', prompt_tokens=130, completion_tokens=8),
            openai_chat(
                '```json\n{"name": "Ada", "age": 36}\n```', prompt_tokens=170, completion_tokens=12
            ),
        ],
    )
    out = await run(
        make_settings(server),
        http,
        model="openai/gpt-4o-mini",
        response_format={"json_schema": PERSON_SCHEMA},
    )
    assert out.data == {"name": "Ada", "age": 36}
    assert out.usage.input_tokens == 400
    assert out.usage.output_tokens == 30
    assert out.cost_usd == pytest.approx((400 * 0.15 + 30 * 0.60) / 1e6)
    assert any("repaired after 2" in w for w in out.warnings)

    first, second, third = (r.json() for r in server.requests_to(OR_PATH))
    assert len(first["messages"]) == 2  # system + user
    # Second call: the bad reply and the parser's complaint are fed back.
    assert second["messages"][2] == {"role": "assistant", "content": "Sure! {name: Ada"}
    assert second["messages"][3]["role"] == "user"
    assert "not valid JSON" in second["messages"][3]["content"]
    # Third call: the schema validator's error, by path.
    assert "'age' is a required property" in third["messages"][5]["content"]


async def test_repair_loop_gives_up_with_output_invalid(server, http):
    server.route("POST", OR_PATH, openai_chat("I cannot answer in JSON, sorry."))
    err = await run_error(make_settings(server), http, response_format="json", max_repairs=2)
    assert err.type == "OUTPUT_INVALID"
    assert err.non_retryable is True
    assert len(server.requests_to(OR_PATH)) == 3  # max_repairs + 1


async def test_no_repair_when_max_repairs_is_zero(server, http):
    server.route("POST", OR_PATH, openai_chat("nope"))
    err = await run_error(make_settings(server), http, response_format="json", max_repairs=0)
    assert err.type == "OUTPUT_INVALID"
    assert len(server.requests_to(OR_PATH)) == 1


# --- fallbacks ----------------------------------------------------------------------------------


async def test_fallback_after_retryable_failure(server, http):
    server.route("POST", OR_PATH, openai_error(503, "no capacity", type_="server_error"))
    server.route("POST", ANTHROPIC_PATH, anthropic_message("from claude"))
    out = await run(
        make_settings(server),
        http,
        fallbacks=[LlmFallback(provider="anthropic", model="claude-3-5-haiku-latest")],
    )
    assert (out.content, out.provider) == ("from claude", "anthropic")
    assert any("openrouter/openai/gpt-4o-mini failed (UPSTREAM_ERROR)" in w for w in out.warnings)
    assert len(server.requests_to(OR_PATH)) == 1


async def test_fallback_chain_when_primary_key_missing_in_production(server, http):
    server.route("POST", OPENAI_PATH, openai_error(404, "model not found"))
    server.route("POST", ANTHROPIC_PATH, anthropic_message("third time lucky"))
    settings = make_settings(server, environment="production", openrouter_api_key=None)
    out = await run(
        settings,
        http,
        fallbacks=[
            LlmFallback(provider="openai", model="gpt-4o-nonexistent"),
            LlmFallback(provider="anthropic", model="claude-3-5-haiku-latest"),
        ],
    )
    assert out.provider == "anthropic"
    assert any("CONFIG_ERROR" in w for w in out.warnings)
    assert any("UPSTREAM_NOT_FOUND" in w for w in out.warnings)


async def test_bad_request_does_not_fall_back(server, http):
    server.route("POST", OR_PATH, openai_error(400, "temperature out of range"))
    server.route("POST", ANTHROPIC_PATH, anthropic_message("unused"))
    err = await run_error(
        make_settings(server),
        http,
        fallbacks=[LlmFallback(provider="anthropic", model="claude-3-5-haiku-latest")],
    )
    assert err.type == "UPSTREAM_REJECTED"
    assert server.requests_to(ANTHROPIC_PATH) == []


async def test_all_fallbacks_fail_raises_last_error_keeping_retryability(server, http):
    server.route("POST", OR_PATH, openai_error(401, "bad key"))
    server.route(
        "POST",
        ANTHROPIC_PATH,
        anthropic_error(429, "rate_limit_error", "slow", headers={"retry-after": "3"}),
    )
    err = await run_error(
        make_settings(server),
        http,
        fallbacks=[LlmFallback(provider="anthropic", model="claude-3-5-haiku-latest")],
    )
    assert err.type == "RATE_LIMITED"
    assert err.non_retryable is False
    assert err.next_retry_delay == timedelta(seconds=3)


# --- mock provider --------------------------------------------------------------------------


async def test_mock_is_deterministic_and_offline(server, http):
    settings = make_settings(server)
    a = await run(
        settings, http, provider="mock", model="demo", prompt="Plan a trip to Rome. Then pack."
    )
    b = await run(
        settings, http, provider="mock", model="demo", prompt="Plan a trip to Rome. Then pack."
    )
    c = await run(settings, http, provider="mock", model="demo", prompt="Something else entirely.")
    assert a.content == b.content == "[mock:demo] Plan a trip to Rome.…"
    assert c.content != a.content
    assert a.usage == b.usage and a.usage.output_tokens == -(-len(a.content) // 4)
    assert a.cost_usd == 0.0 and a.provider == "mock" and a.warnings == []
    assert server.requests == []


async def test_mock_json_follows_the_schema(server, http):
    schema = {
        "type": "object",
        "properties": {
            "contacts": {
                "type": "array",
                "minItems": 2,
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "minLength": 12},
                        "phone": {"type": "string"},
                        "kind": {"enum": ["police", "fire"]},
                        "priority": {"type": "integer", "minimum": 1, "maximum": 5},
                        "score": {"type": "number", "exclusiveMinimum": 0.5},
                        "verified": {"type": "boolean"},
                        "email": {"type": "string", "format": "email"},
                    },
                    "required": ["name", "phone", "kind"],
                },
            },
            "note": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/note"}]},
        },
        "required": ["contacts"],
        "$defs": {"note": {"type": "string"}},
    }
    out = await run(
        make_settings(server), http, provider="mock", response_format={"json_schema": schema}
    )
    jsonschema.validate(out.data, schema)
    assert len(out.data["contacts"]) == 2
    assert out.data["contacts"][0]["kind"] in ("police", "fire")  # seeded by the prompt
    again = await run(
        make_settings(server), http, provider="mock", response_format={"json_schema": schema}
    )
    assert again.data == out.data


async def test_mock_plain_json_and_fixed_response(server, http):
    out = await run(
        make_settings(server),
        http,
        provider="mock",
        response_format="json",
        prompt="Tell me a joke",
    )
    assert out.data == {"result": "Tell me a joke"}
    fixed = await run(
        make_settings(server),
        http,
        provider="mock",
        mock_response='{"x": 1}',
        response_format="json",
    )
    assert (fixed.content, fixed.data) == ('{"x": 1}', {"x": 1})


async def test_mock_latency_from_input_or_settings(server, http):
    out = await run(make_settings(server), http, provider="mock", mock_latency_ms=120)
    assert out.duration_ms >= 120
    out = await run(make_settings(server, llm_mock_latency_ms=80), http, provider="mock")
    assert out.duration_ms >= 80


async def test_heartbeats_while_a_call_is_in_flight(server, http):
    server.route("POST", OR_PATH, Response(200, openai_chat_body("slow"), delay=0.35))
    beats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    out = await run(make_settings(server), http, env, heartbeat=0.05)
    assert out.content == "slow"
    assert len(beats) >= 3
    assert beats[0] == ({"step_id": "summarize"},)


# --- pure helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("anthropic/claude-3.5-sonnet", (3.0, 15.0)),
        ("claude-3-5-sonnet-20241022", (3.0, 15.0)),
        ("claude-3-5-haiku-latest", (0.8, 4.0)),
        ("openai/gpt-4o-mini", (0.15, 0.6)),
        ("gpt-4o-mini", (0.15, 0.6)),
        ("gpt-4o-mini-2024-07-18", (0.15, 0.6)),
        ("anthropic/claude-3.7-sonnet:beta", (3.0, 15.0)),
        ("meta-llama/llama-3.1-8b-instruct:free", (0.0, 0.0)),
        ("totally-unknown-model", None),
    ],
)
def test_price_lookup(model, price):
    assert price_for(model) == price


def test_unknown_model_costs_zero_with_warning():
    cost, warning = cost_usd(
        LlmUsage(input_tokens=10, output_tokens=10, total_tokens=20), "mystery-1"
    )
    assert cost == 0.0
    assert warning is not None and "mystery-1" in warning


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a": 1}', {"a": 1}),
        ('```json\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
        ('Sure, here it is:\n```\n{"a": 2}\n```\nAnything else?', {"a": 2}),
        ('The answer [see below] is {"a": 3} as requested.', {"a": 3}),
        ("[1, 2, 3]", [1, 2, 3]),
        ('```json\n{"a": 4}', {"a": 4}),
    ],
)
def test_parse_json_reply_tolerates_fences_and_prose(text, value):
    assert parse_json_reply(text) == value


@pytest.mark.parametrize("text", ["", "no json here", '{"a": 1', "```json\n{oops}\n```"])
def test_parse_json_reply_rejects_non_json(text):
    with pytest.raises(JsonReplyError):
        parse_json_reply(text)


@pytest.mark.parametrize(
    ("value", "kind", "has_schema"),
    [
        (None, "text", False),
        ("text", "text", False),
        ("json", "json", False),
        ({"type": "json_object"}, "json", False),
        ({"json_schema": PERSON_SCHEMA}, "json", True),
        (
            {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON_SCHEMA}},
            "json",
            True,
        ),
        ({"schema": PERSON_SCHEMA}, "json", True),
        (PERSON_SCHEMA, "json", True),
    ],
)
def test_response_format_spellings(value, kind, has_schema):
    fmt = parse_response_format(value)
    assert fmt.kind == kind
    assert (fmt.schema == PERSON_SCHEMA) is has_schema


@pytest.mark.parametrize("value", ["yaml", {"foo": 1}, {"json_schema": {"type": 12}}])
def test_response_format_rejects_nonsense(value):
    with pytest.raises(ApplicationError) as info:
        parse_response_format(value)
    assert info.value.type == "VALIDATION_ERROR"
    assert info.value.non_retryable


def test_schema_sample_validates_for_person_schema():
    jsonschema.validate(sample_for_schema(PERSON_SCHEMA), PERSON_SCHEMA)
