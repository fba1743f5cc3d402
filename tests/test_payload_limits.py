"""No step output, activity input or job result may outgrow what Temporal accepts: such a run
used to fail its workflow task forever while the API said `completed`. Now the step (or the
job) fails with PAYLOAD_TOO_LARGE, and the run ends."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Engine
from temporalio.client import Client, WorkflowExecutionStatus

from core.payload_limits import json_size
from core.settings import Settings
from tests import harness
from tests.api_server import gateway
from tests.fakes.http_server import FakeHTTPServer, Request, Response
from tests.fakes.llm_wire import openai_chat
from tests.test_api_jobs import poll

CHAT = "/openrouter/api/v1/chat/completions"
CLASSIFIED = {"category": "billing", "urgency": "high", "summary": "double charge"}


def triage_llm(req: Request) -> Response:
    # classify asks for JSON (response_format), draft_reply for text.
    asks_json = "response_format" in req.json()
    return openai_chat(json.dumps(CLASSIFIED) if asks_json else "We are on it.")


async def test_oversized_crm_answers_fail_their_step_and_the_job_ends(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", CHAT, triage_llm)
    # ~1 MB of JSON, and ~300 KB of control characters (each escapes to six bytes).
    upstream.route("GET", "/crm/big", Response(200, {"blob": "x" * 1_000_000}))
    upstream.route("GET", "/crm/ctrl", Response(200, "\x01" * 300_000))
    async with harness.running_worker(temporal_client, settings, engine):
        async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
            jobs = {}
            for name in ("big", "ctrl"):
                body = {
                    "workflow_name": "ticket_triage",
                    "workflow_version": "1.0.0",
                    "input_data": {
                        "message": "Charged twice!",
                        "plan": "pro",
                        "crm_url": f"{upstream.url}/crm/{name}",
                    },
                }
                jobs[name] = (await api.post("/api/v1/jobs", json=body)).json()["job_id"]
            finals = {name: await poll(api, job_id) for name, job_id in jobs.items()}
            cancels = [await api.post(f"/api/v1/jobs/{j}/cancel") for j in jobs.values()]

    for name, final in finals.items():
        # customer_profile tolerates failure (error_mode: continue): the job completes without it.
        assert final["status"] == "completed", (name, final["error"])
        steps = {s["id"]: s for s in final["metadata"]["steps"]}
        profile = steps["customer_profile"]
        assert profile["status"] == "failed" and json_size(profile["output"]) < 100  # its default
        assert profile["error"]["type"] == "PAYLOAD_TOO_LARGE", profile["error"]
        assert "limit" in profile["error"]["message"]
        assert final["output"]["profile_status"] == "failed"
        desc = await temporal_client.get_workflow_handle(jobs[name]).describe()
        assert desc.status == WorkflowExecutionStatus.COMPLETED
    assert (
        "256 KiB limit"
        in {s["id"]: s for s in finals["big"]["metadata"]["steps"]}["customer_profile"]["error"][
            "message"
        ]
    )
    ctrl = {s["id"]: s for s in finals["ctrl"]["metadata"]["steps"]}["customer_profile"]
    assert "1.72 MiB" in ctrl["error"]["message"]
    assert all(c.status_code == 409 for c in cancels)  # closed for real, nothing to cancel


def copy_step(step_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "transform",
        "config": {"operation": "coalesce", "config": {"values": ["${input.text}"]}},
        **extra,
    }


async def test_a_transform_output_over_its_limit_fails_that_step(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    defn = {
        "name": "big_transform",
        "version": "1.0.0",
        "steps": [copy_step("small"), copy_step("roomy", max_output_bytes=400_000)],
    }
    text = "y" * 300_000
    async with harness.running_worker(temporal_client, settings, engine):
        _, failure = await harness.run_failing(
            temporal_client, settings, harness.load(defn, settings), {"text": text}
        )
        tolerant = {**defn, "steps": [copy_step("roomy", max_output_bytes=400_000)]}
        result = await harness.run(
            temporal_client, settings, harness.load(tolerant, settings), {"text": text}
        )
    error = failure.cause.details[0]  # type: ignore[attr-defined]
    assert error["type"] == "PAYLOAD_TOO_LARGE" and error["step_id"] == "small"
    assert "293 KiB" in error["message"] and "256 KiB limit" in error["message"]
    assert result.status == "completed" and result.output == text


async def test_a_result_over_the_limit_ends_the_job_failed_with_the_reason(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    # Seven steps of ~240 KiB each fit one by one but not together in one result.
    defn = {
        "name": "big_result",
        "version": "1.0.0",
        "steps": [copy_step(f"copy{i}") for i in range(7)],
    }
    async with harness.running_worker(temporal_client, settings, engine):
        handle, failure = await harness.run_failing(
            temporal_client, settings, harness.load(defn, settings), {"text": "z" * 240_000}
        )
        desc = await handle.describe()
    error = failure.cause.details[0]  # type: ignore[attr-defined]
    assert error["type"] == "PAYLOAD_TOO_LARGE" and "job's result" in error["message"]
    assert desc.status == WorkflowExecutionStatus.FAILED


async def test_an_activity_input_over_the_limit_fails_before_it_is_scheduled(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", CHAT, openai_chat("never asked"))
    defn = {
        "name": "big_prompt",
        "version": "1.0.0",
        "steps": [
            {
                "id": "ask",
                "type": "llm",
                "config": {"model": "openai/gpt-4o-mini", "prompt_text": "Read: ${input.text}"},
            }
        ],
    }
    text = "w" * 1_100_000
    assert json_size({"text": text}) < 2 * 1024 * 1024  # the input itself is acceptable
    async with harness.running_worker(temporal_client, settings, engine):
        _, failure = await harness.run_failing(
            temporal_client, settings, harness.load(defn, settings), {"text": text}
        )
    error = failure.cause.details[0]  # type: ignore[attr-defined]
    assert error["type"] == "PAYLOAD_TOO_LARGE" and error["step_id"] == "ask"
    assert "input" in error["message"]
    assert upstream.requests_to(CHAT) == []
