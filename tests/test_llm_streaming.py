"""Streamed LLM output: the provider's SSE is read piece by piece, each piece goes to the job's
event stream as an `llm.delta` (through Redis, never Temporal's history), and the step's
recorded output is the whole text, as a call without streaming would record it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy.engine import Engine
from temporalio.client import Client

from activities.llm.anthropic_messages import AnthropicMessagesProvider
from activities.llm.chat import ChatMessage, ChatRequest
from activities.llm.mock import MockProvider, stream_chunks
from activities.llm.openai_chat import OpenAIChatProvider
from activities.llm.response_format import parse_response_format
from core.llm_stream import DEGRADED_WARNING, read_deltas
from core.settings import Settings
from tests import harness
from tests.api_server import gateway
from tests.fakes.http_server import FakeHTTPServer
from tests.fakes.llm_wire import anthropic_stream, openai_chat, openai_stream
from tests.test_api_rerun_events import read_events

REPO_DEFS = Path(__file__).resolve().parents[1] / "workflow_defs"
CHAT = "/openrouter/api/v1/chat/completions"
PIECES = [
    "Durable ",
    "workflows ",
    "keep ",
    "their ",
    "promises, ",
    "even ",
    "when ",
    "workers ",
    "die.",
]
TEXT = "".join(PIECES)


def request(on_delta: Any, **extra: Any) -> ChatRequest:
    return ChatRequest(
        model="m",
        messages=[ChatMessage("user", "tell me")],
        system=None,
        response_format=parse_response_format(None),
        on_delta=on_delta,
        **extra,
    )


async def test_openai_and_anthropic_streams_are_read_piece_by_piece(
    upstream: FakeHTTPServer,
) -> None:
    upstream.route("POST", "/oai/chat/completions", openai_stream(PIECES))
    upstream.route("POST", "/anthropic/v1/messages", anthropic_stream(PIECES))
    seen: dict[str, list[str]] = {"openai": [], "anthropic": []}
    async with httpx.AsyncClient() as http:
        openai = OpenAIChatProvider("openai", http, base_url=f"{upstream.url}/oai", api_key="k")
        result = await openai.complete(request(lambda t: _add(seen["openai"], t)))
        assert result.content == TEXT and seen["openai"] == PIECES
        assert result.usage.input_tokens == 10 and result.usage.output_tokens == 9
        assert result.finish_reason == "stop"
        body = upstream.requests_to("/oai/chat/completions")[0].json()
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}

        anthropic = AnthropicMessagesProvider(
            http, base_url=f"{upstream.url}/anthropic", api_key="k"
        )
        result = await anthropic.complete(request(lambda t: _add(seen["anthropic"], t)))
        assert result.content == TEXT and seen["anthropic"] == PIECES
        assert (result.usage.input_tokens, result.usage.output_tokens) == (12, 7)
        assert result.finish_reason == "end_turn"


async def test_a_server_that_ignores_stream_is_read_whole(upstream: FakeHTTPServer) -> None:
    upstream.route("POST", "/oai/chat/completions", openai_chat(TEXT))
    seen: list[str] = []
    async with httpx.AsyncClient() as http:
        openai = OpenAIChatProvider("openai", http, base_url=f"{upstream.url}/oai", api_key="k")
        result = await openai.complete(request(lambda t: _add(seen, t)))
    assert result.content == TEXT and seen == [TEXT]


async def test_a_cut_stream_is_a_retryable_failure(upstream: FakeHTTPServer) -> None:
    from temporalio.exceptions import ApplicationError

    upstream.route("POST", "/oai/chat/completions", openai_stream(PIECES, drop_after=3))
    async with httpx.AsyncClient() as http:
        openai = OpenAIChatProvider("openai", http, base_url=f"{upstream.url}/oai", api_key="k")
        with pytest.raises(ApplicationError) as caught:
            await openai.complete(request(lambda t: _noop(t)))
    assert not caught.value.non_retryable


async def test_the_mock_provider_streams_pieces_that_join_to_its_reply() -> None:
    pieces: list[str] = []
    reply = "Durable workflows keep their promises, even when workers die."
    result = await MockProvider().complete(
        request(lambda t: _add(pieces, t), mock_latency_ms=40, mock_response=reply)
    )
    assert len(pieces) > 1 and "".join(pieces) == result.content
    assert "".join(stream_chunks("a  b\nc ")) == "a  b\nc "


async def _add(into: list[str], text: str) -> None:
    into.append(text)


async def _noop(text: str) -> None:
    return None


# --- end to end: gateway, worker, Redis -----------------------------------------------------


def streaming_definition(max_retries: int = 0) -> dict[str, Any]:
    return {
        "name": "stream_story",
        "version": "1.0.0",
        "steps": [
            {
                "id": "story",
                "type": "llm",
                "retry": {"max_retries": max_retries, "initial_delay": 0.1},
                "config": {
                    "provider": "openrouter",
                    "model": "openai/gpt-4o-mini",
                    "prompt_text": "Tell a short story about ${input.topic}",
                    "stream": True,
                },
            }
        ],
    }


def stream_settings(
    settings: Settings, tmp_path: Path, *, redis: bool, retries: int = 0
) -> Settings:
    defs = tmp_path / "defs"
    shutil.copytree(REPO_DEFS, defs, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (defs / "stream_story.json").write_text(json.dumps(streaming_definition(retries)))
    redis_url = os.environ.get("TEST_REDIS_URL") if redis else None
    if redis and not redis_url:
        pytest.skip("TEST_REDIS_URL is not set")
    return settings.model_copy(update={"workflow_defs_dir": defs, "redis_url": redis_url})


async def run_streamed(
    client: Client, settings: Settings, engine: Engine
) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    async with harness.running_worker(client, settings, engine):
        async with gateway(settings, engine=engine, temporal_client=client) as api:
            accepted = await api.post(
                "/api/v1/jobs",
                json={"workflow_name": "stream_story", "input_data": {"topic": "durability"}},
            )
            assert accepted.status_code == 202, accepted.text
            events = await read_events(api, accepted.json()["job_id"])
    job = events[-1][1]
    return job, events


def story_record(job: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in job["metadata"]["steps"] if r["path"] == "story")


async def test_deltas_arrive_before_the_step_finishes_and_join_to_its_output(
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
    tmp_path: Path,
) -> None:
    upstream.route("POST", CHAT, openai_stream(PIECES, pause=0.15))
    cfg = stream_settings(settings, tmp_path, redis=True)
    job, events = await run_streamed(temporal_client, cfg, engine)
    assert job["status"] == "completed"
    names = [name for name, _ in events]
    finished = next(
        i for i, (n, d) in enumerate(events) if n == "step" and d["phase"] == "finished"
    )
    deltas = [d for n, d in events if n == "llm.delta"]
    assert len(deltas) == len(PIECES)
    assert all(names.index("llm.delta") < finished for _ in deltas)
    assert max(i for i, n in enumerate(names) if n == "llm.delta") < finished
    assert {(d["path"], d["attempt"], d["call"]) for d in deltas} == {("story", 1, 1)}
    record = story_record(job)
    assert "".join(d["text"] for d in deltas) == record["output"]["content"] == TEXT
    # The recorded output is what a call without streaming records: usage and cost included.
    assert record["output"]["usage"]["total_tokens"] == 19
    # The live `finished` event says what the final record says.
    live = events[finished][1]
    assert live["attempts"] == record["attempts"] == 1
    assert live["duration_ms"] == record["duration_ms"]
    # Every step event comes before the terminal status, and the job event is last.
    assert names[-2:] == ["status", "job"] and events[-2][1]["status"] == "completed"


async def test_a_retried_attempt_streams_again_and_the_record_is_whole(
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
    tmp_path: Path,
) -> None:
    upstream.route(
        "POST",
        CHAT,
        [openai_stream(PIECES, pause=0.05, drop_after=4), openai_stream(PIECES, pause=0.05)],
    )
    cfg = stream_settings(settings, tmp_path, redis=True, retries=2)
    job, events = await run_streamed(temporal_client, cfg, engine)
    assert job["status"] == "completed"
    record = story_record(job)
    assert record["attempts"] == 2 and record["output"]["content"] == TEXT
    deltas = [d for n, d in events if n == "llm.delta"]
    first = [d["text"] for d in deltas if d["attempt"] == 1]
    second = [d["text"] for d in deltas if d["attempt"] == 2]
    assert first == PIECES[:4]  # the cut attempt's partial text, marked so it can be dropped
    assert "".join(second) == record["output"]["content"]


async def test_without_redis_the_text_arrives_whole_with_a_warning(
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
    tmp_path: Path,
) -> None:
    # Without Redis there is nowhere to publish deltas, so the worker asks for the whole reply.
    upstream.route(
        "POST",
        CHAT,
        lambda req: openai_stream(PIECES) if req.json().get("stream") else openai_chat(TEXT),
    )
    cfg = stream_settings(settings, tmp_path, redis=False)
    job, events = await run_streamed(temporal_client, cfg, engine)
    record = story_record(job)
    assert DEGRADED_WARNING in record["warnings"]
    deltas = [(i, d) for i, (n, d) in enumerate(events) if n == "llm.delta"]
    finished = next(
        i for i, (n, d) in enumerate(events) if n == "step" and d["phase"] == "finished"
    )
    assert len(deltas) == 1 and deltas[0][0] < finished
    assert deltas[0][1]["text"] == record["output"]["content"] == TEXT


@pytest.mark.timeout(240)  # the dead worker's attempt times out on its 30 s heartbeat
async def test_a_worker_killed_mid_stream_streams_again_on_the_next(
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
    tmp_path: Path,
) -> None:
    slow = [f"piece{i} " for i in range(40)]
    upstream.route(
        "POST", CHAT, [openai_stream(slow, pause=0.25), openai_stream(PIECES, pause=0.01)]
    )
    cfg = stream_settings(settings, tmp_path, redis=True, retries=2)
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "TEMPORAL_ADDRESS": cfg.temporal_address,
        "TEMPORAL_NAMESPACE": cfg.temporal_namespace,
        "TEMPORAL_TASK_QUEUE": cfg.temporal_task_queue,
        "DATABASE_URL": cfg.database_url,
        "REDIS_URL": str(cfg.redis_url),
        "OPENROUTER_BASE_URL": cfg.openrouter_base_url,
        "OPENROUTER_API_KEY": str(cfg.openrouter_api_key),
    }
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.cli", "worker", env=env, cwd=REPO_DEFS.parent
    )
    redis = aioredis.from_url(str(cfg.redis_url))
    try:
        loaded = harness.load(streaming_definition(2), cfg)
        handle = await harness.start(temporal_client, cfg, loaded, {"topic": "crashes"})
        deadline = asyncio.get_running_loop().time() + 60
        while len(await read_deltas(redis, handle.id)) < 3:
            assert asyncio.get_running_loop().time() < deadline, "no deltas from the worker"
            await asyncio.sleep(0.1)
        worker.send_signal(signal.SIGKILL)  # mid-stream: no chance to report anything
        await worker.wait()
        async with harness.running_worker(temporal_client, cfg, engine):
            result = await handle.result()
        deltas = await read_deltas(redis, handle.id)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        await redis.aclose()
    story = next(r for r in result.metadata.steps if r.path == "story")
    assert story.attempts == 2 and story.output["content"] == TEXT
    first = "".join(d.text for d in deltas if d.attempt == 1)
    second = "".join(d.text for d in deltas if d.attempt == 2)
    assert first and "".join(slow).startswith(first) and first != "".join(slow)
    assert second == TEXT


async def test_the_shipped_draft_refine_streams_its_drafts_on_the_mock(
    temporal_client: Client, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    cfg = stream_settings(settings, tmp_path, redis=True).model_copy(
        update={"llm_default_provider": "mock", "openrouter_api_key": None}
    )
    async with harness.running_worker(temporal_client, cfg, engine):
        async with gateway(cfg, engine=engine, temporal_client=temporal_client) as api:
            accepted = await api.post(
                "/api/v1/jobs",
                json={"workflow_name": "draft_refine", "input_data": {"brief": "Thank donors"}},
            )
            events = await read_events(api, accepted.json()["job_id"])
    job = events[-1][1]
    assert job["status"] == "completed", job["error"]
    first = [d for n, d in events if n == "llm.delta" and d["path"] == "refine#1.draft"]
    draft = next(r for r in job["metadata"]["steps"] if r["path"] == "refine#1.draft")
    assert len(first) > 1 and "".join(d["text"] for d in first) == draft["output"]["content"]
