"""Replay the committed histories of the shipped workflows against the current interpreter.

Regenerate them (only when an interpreter change is deliberately guarded with
`workflow.patched`, or a new shipped workflow is added) with:

    LLMFLOW_RECORD_HISTORIES=1 .venv/bin/pytest tests/test_replay.py -k record
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.contracts import InterpreterInput, WebhookTarget
from core.settings import Settings
from core.temporal import start_job
from tests import harness
from tests.fakes.http_server import FakeHTTPServer, Response
from tests.fakes.llm_wire import openai_chat
from tests.test_emergency_contacts import INPUT as EMERGENCY_INPUT
from tests.test_emergency_contacts import route_upstream
from tests.test_shipped_control_flow import nearby
from worker.replay import load_history_file, replay
from workflow_defs.catalog import load_catalog

HISTORIES = Path(__file__).parent / "histories"
CHAT = "/openrouter/api/v1/chat/completions"

SHIPPED_RUNS: dict[str, dict[str, Any]] = {
    "quickstart": {"topic": "durable execution"},
    "emergency_contacts": EMERGENCY_INPUT,
    "ticket_triage": {"message": "I was charged twice this month!", "plan": "pro"},
    "place_briefs": {"lat": 37.77, "lng": -122.42, "max_places": 3},
    "draft_refine": {"brief": "Invite the neighbours to a preparedness evening"},
}


def route_for(name: str, upstream: FakeHTTPServer) -> None:
    if name == "quickstart":
        upstream.route(
            "POST", CHAT, openai_chat(json.dumps({"title": "T", "points": ["a", "b", "c"]}))
        )
    elif name == "emergency_contacts":
        route_upstream(upstream)
    elif name == "place_briefs":
        upstream.route("GET", "/maps/api/place/nearbysearch/json", nearby)
        upstream.route(
            "POST", CHAT, openai_chat(json.dumps({"fit": "high", "summary": "s", "caveat": ""}))
        )
    elif name == "draft_refine":
        upstream.route(
            "POST",
            CHAT,
            [
                openai_chat("first draft"),
                openai_chat(json.dumps({"score": 5, "feedback": "shorter"})),
                openai_chat("second draft"),
                openai_chat(json.dumps({"score": 9, "feedback": "good"})),
            ],
        )
    else:
        upstream.route(
            "POST",
            CHAT,
            [
                openai_chat(
                    json.dumps(
                        {"category": "billing", "urgency": "high", "summary": "double charge"}
                    )
                ),
                Response(
                    200,
                    {
                        "choices": [
                            {
                                "message": {"content": "Sorry! We refunded you."},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {},
                    },
                ),
            ],
        )


def history_files() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def test_every_shipped_workflow_has_a_committed_history(settings: Settings) -> None:
    shipped = {d.name for d in load_catalog(settings).definitions.all()}
    recorded = {p.stem for p in history_files()}
    assert shipped <= recorded, f"record histories for: {sorted(shipped - recorded)}"


@pytest.mark.parametrize("path", history_files(), ids=lambda p: p.stem)
async def test_committed_history_replays(path: Path) -> None:
    await replay(load_history_file(path))


@pytest.mark.skipif(
    not os.environ.get("LLMFLOW_RECORD_HISTORIES"),
    reason="set LLMFLOW_RECORD_HISTORIES=1 to re-record",
)
@pytest.mark.parametrize("name", sorted(SHIPPED_RUNS))
async def test_record_history(
    name: str, temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    route_for(name, upstream)
    loaded = load_catalog(settings).definitions.get(name)
    assert loaded is not None
    async with harness.running_worker(temporal_client, settings, engine):
        handle = await harness.start(temporal_client, settings, loaded, SHIPPED_RUNS[name])
        result = await handle.result()
        history = await handle.fetch_history()
    assert result.status == "completed", result
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(history.to_json() + "\n")


@pytest.mark.skipif(
    not os.environ.get("LLMFLOW_RECORD_HISTORIES"),
    reason="set LLMFLOW_RECORD_HISTORIES=1 to re-record",
)
async def test_record_webhook_histories(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    """The interpreter starting its completion-webhook child, and the delivery workflow itself
    (one retried attempt), so both command sequences are replayed in CI."""
    route_for("quickstart", upstream)
    upstream.route(
        "POST",
        "/hooks/replay",
        [Response(503, "busy", headers={"Retry-After": "1"}), Response(200, "ok")],
    )
    hooked = settings.model_copy(update={"llm_webhook_secret": "replay-secret-123456"})
    loaded = load_catalog(hooked).definitions.get("quickstart")
    assert loaded is not None
    inp = InterpreterInput(
        job_id=f"replay-{uuid.uuid4()}",
        definition=loaded.snapshot(),
        input_data=SHIPPED_RUNS["quickstart"],
        webhook=WebhookTarget(url=upstream.url + "/hooks/replay", secret_ref="env"),
    )
    async with harness.running_worker(temporal_client, hooked, engine):
        handle = await start_job(temporal_client, hooked, inp)
        await handle.result()
        desc = await handle.describe()
        child = temporal_client.get_workflow_handle(f"{inp.job_id}:webhook:{desc.run_id}")
        await child.result()
        parent_history = await handle.fetch_history()
        child_history = await child.fetch_history()
    (HISTORIES / "quickstart_with_webhook.json").write_text(parent_history.to_json() + "\n")
    (HISTORIES / "webhook_delivery.json").write_text(child_history.to_json() + "\n")


@pytest.mark.skipif(
    not os.environ.get("LLMFLOW_RECORD_HISTORIES"),
    reason="set LLMFLOW_RECORD_HISTORIES=1 to re-record",
)
async def test_record_failed_history(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    """A failing run: the failure path (final mirror, job alert, failed workflow) is replayed too."""
    upstream.route(
        "POST",
        CHAT,
        Response(400, {"error": {"message": "bad request", "type": "invalid_request_error"}}),
    )
    loaded = load_catalog(settings).definitions.get("quickstart")
    assert loaded is not None
    async with harness.running_worker(temporal_client, settings, engine):
        handle, _ = await harness.run_failing(
            temporal_client, settings, loaded, SHIPPED_RUNS["quickstart"]
        )
        history = await handle.fetch_history()
    (HISTORIES / "quickstart_failed.json").write_text(history.to_json() + "\n")


@pytest.mark.skipif(
    not os.environ.get("LLMFLOW_RECORD_HISTORIES"),
    reason="set LLMFLOW_RECORD_HISTORIES=1 to re-record",
)
async def test_record_local_mirror_history(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    """A run since the mirror writes became local activities (the patched path)."""
    route_for("quickstart", upstream)
    loaded = load_catalog(settings).definitions.get("quickstart")
    assert loaded is not None
    async with harness.running_worker(temporal_client, settings, engine):
        handle = await harness.start(temporal_client, settings, loaded, SHIPPED_RUNS["quickstart"])
        await handle.result()
        history = await handle.fetch_history()
    assert any(e.HasField("marker_recorded_event_attributes") for e in history.events)
    (HISTORIES / "quickstart_local_mirror.json").write_text(history.to_json() + "\n")
