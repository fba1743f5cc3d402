"""What the worker logs when a step fails as designed: one line naming the job, the step, the
attempt, the error type and message, not a traceback per attempt. A bug keeps its traceback."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.settings import Settings
from tests import harness
from tests.fakes.http_server import FakeHTTPServer
from tests.fakes.llm_wire import openai_error
from worker.failure_log import OneLineStepFailures

CHAT = "/openrouter/api/v1/chat/completions"


def refused() -> dict[str, Any]:
    return {
        "name": "refused",
        "version": "1.0.0",
        "steps": [
            {
                "id": "ask",
                "type": "llm",
                "config": {"model": "openai/gpt-4o-mini", "prompt_text": "hello"},
            },
            {
                "id": "maybe",
                "type": "transform",
                "when": "input.send_copy == true",
                "config": {"operation": "coalesce", "config": {"values": ["${input.copy_to}"]}},
            },
        ],
    }


async def test_an_expected_step_failure_is_one_line(
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream.route("POST", CHAT, openai_error(400, "model is not a chat model"))
    caplog.set_level(logging.WARNING, logger="temporalio.activity")
    async with harness.running_worker(temporal_client, settings, engine):
        handle, _ = await harness.run_failing(
            temporal_client, settings, harness.load(refused(), settings)
        )
    lines = [r for r in caplog.records if r.name == "temporalio.activity"]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    message = lines[0].getMessage()
    assert message.startswith(f"step ask of job {handle.id} failed (attempt 1, final): ")
    assert "model is not a chat model" in message
    assert lines[0].exc_info is None and "Traceback" not in caplog.text


def test_a_bug_keeps_its_traceback() -> None:
    logger = logging.getLogger("test.failure_log")
    try:
        raise KeyError("a bug")
    except KeyError:
        record = logger.makeRecord(
            "temporalio.activity",
            logging.WARNING,
            __file__,
            1,
            "Completing activity as failed",
            None,
            exc_info=__import__("sys").exc_info(),
            extra={"__temporal_error_identifier": "ActivityFailure"},
        )
    assert OneLineStepFailures().filter(record) is True
    assert record.exc_info is not None and record.getMessage() == "Completing activity as failed"


async def test_a_step_skipped_by_when_carries_no_warnings(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    from tests.fakes.llm_wire import openai_chat

    upstream.route("POST", CHAT, openai_chat("hi"))
    async with harness.running_worker(temporal_client, settings, engine):
        result = await harness.run(temporal_client, settings, harness.load(refused(), settings))
    maybe = next(r for r in result.metadata.steps if r.id == "maybe")
    assert maybe.status == "skipped" and maybe.warnings == []
