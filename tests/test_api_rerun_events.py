"""POST /jobs/{id}/rerun (optionally from a step) and GET /jobs/{id}/events (SSE)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.settings import Settings
from tests import harness
from tests.api_server import gateway
from tests.fakes.http_server import FakeHTTPServer
from tests.fakes.llm_wire import openai_chat, openai_error
from tests.test_api_jobs import poll

CHAT = "/openrouter/api/v1/chat/completions"
TRIAGE = {
    "workflow_name": "ticket_triage",
    "workflow_version": "1.0.0",
    "input_data": {"message": "Charged twice!", "plan": "pro"},
}
CLASSIFIED = {"category": "billing", "urgency": "high", "summary": "double charge"}


async def test_rerun_from_a_step_reuses_earlier_outputs(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route(
        "POST", CHAT, [openai_chat(json.dumps(CLASSIFIED)), openai_error(400, "context too long")]
    )
    async with harness.running_worker(temporal_client, settings, engine):
        async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
            first_id = (await api.post("/api/v1/jobs", json=TRIAGE)).json()["job_id"]
            first = await poll(api, first_id)
            assert first["status"] == "failed" and first["error"]["step_id"] == "draft_reply"

            upstream.route("POST", CHAT, openai_chat("We refunded the duplicate charge."))
            calls_before = len(upstream.requests_to(CHAT))
            running = await api.post(
                f"/api/v1/jobs/{first_id}/rerun", json={"from_step": "draft_reply"}
            )
            assert running.status_code == 202, running.text
            rerun = running.json()
            second = await poll(api, rerun["job_id"])
            unknown_step = await api.post(
                f"/api/v1/jobs/{first_id}/rerun", json={"from_step": "nope"}
            )
            missing = await api.post("/api/v1/jobs/nope/rerun")

    assert rerun["rerun_of"] == first_id and rerun["reused_steps"] == ["classify"]
    assert second["status"] == "completed"
    assert second["output"]["classification"] == CLASSIFIED
    assert second["output"]["reply"] == "We refunded the duplicate charge."
    assert len(upstream.requests_to(CHAT)) - calls_before == 1  # only draft_reply ran again
    steps = {s["id"]: s for s in second["metadata"]["steps"]}
    assert "output reused from an earlier run" in steps["classify"]["warnings"]
    assert steps["customer_profile"]["status"] == "skipped"
    assert unknown_step.status_code == 422 and unknown_step.json()["detail"][0]["loc"] == [
        "body",
        "from_step",
    ]
    assert missing.status_code == 404


async def test_rerun_after_a_reused_parallel_gives_its_branch_steps_outputs_back(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    """emergency_contacts 3.1.0 fetches in one `parallel` (gather) and format_places_data
    reads its branch steps by id: rerun from there reuses gather, and the branch steps'
    recorded outputs come back with it (they were missing: empty places)."""
    from tests.test_fork import CONTACTS_RUN, no_keys

    offline = no_keys(settings)
    run = {**CONTACTS_RUN, "workflow_version": "3.1.0"}
    async with harness.running_worker(temporal_client, offline, engine):
        async with gateway(offline, engine=engine, temporal_client=temporal_client) as api:
            parent = await poll(api, (await api.post("/api/v1/jobs", json=run)).json()["job_id"])
            answer = await api.post(
                f"/api/v1/jobs/{parent['job_id']}/rerun", json={"from_step": "format_places_data"}
            )
            child = await poll(api, answer.json()["job_id"])
    assert child["status"] == "completed"
    records = {s["id"]: s for s in child["metadata"]["steps"]}
    parents = {s["id"]: s for s in parent["metadata"]["steps"]}
    assert "output reused from an earlier run" in records["gather"]["warnings"]
    assert "fetch_hospitals" not in records  # not run again
    # The same places, named in the same order (a Postgres mirror keeps JSON objects as jsonb,
    # which does not keep their key order, so the text itself may differ).
    names = re.compile(r'"name": "([^"]+)"')
    places = str(records["format_places_data"]["output"])
    assert names.findall(places) == names.findall(str(parents["format_places_data"]["output"]))
    assert "Hospital" in " ".join(names.findall(places))


async def test_rerun_with_the_same_idempotency_key_returns_the_same_job(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", CHAT, openai_error(400, "context too long"))
    async with harness.running_worker(temporal_client, settings, engine):
        async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
            first_id = (await api.post("/api/v1/jobs", json=TRIAGE)).json()["job_id"]
            await poll(api, first_id)
            key = {"Idempotency-Key": "retry-rerun-1"}
            one = await api.post(f"/api/v1/jobs/{first_id}/rerun", headers=key)
            two = await api.post(f"/api/v1/jobs/{first_id}/rerun", headers=key)
            other = await api.post(
                f"/api/v1/jobs/{first_id}/rerun", headers={"Idempotency-Key": "another"}
            )
            for resp in (one, other):
                await poll(api, resp.json()["job_id"])
    assert one.status_code == 202 and two.status_code == 200
    assert two.headers["Idempotent-Replayed"] == "true"
    assert one.json()["job_id"] == two.json()["job_id"] != other.json()["job_id"]


async def test_rerun_of_a_running_job_is_409(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
        job_id = (await api.post("/api/v1/jobs", json=TRIAGE)).json()[
            "job_id"
        ]  # no worker: stays queued
        resp = await api.post(f"/api/v1/jobs/{job_id}/rerun")
        await api.post(f"/api/v1/jobs/{job_id}/cancel")
    assert resp.status_code == 409


async def read_events(api: httpx.AsyncClient, job_id: str) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    async with api.stream("GET", f"/api/v1/jobs/{job_id}/events") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        name = None
        async for line in resp.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name or "", json.loads(line.removeprefix("data: "))))
    return events


async def test_events_stream_follows_a_job_to_its_end(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    slow = settings.model_copy(update={"llm_default_provider": "mock", "llm_mock_latency_ms": 1500})
    async with harness.running_worker(temporal_client, slow, engine):
        async with gateway(slow, engine=engine, temporal_client=temporal_client) as api:
            job_id = (
                await api.post(
                    "/api/v1/jobs",
                    json={"workflow_name": "quickstart", "input_data": {"topic": "sse"}},
                )
            ).json()["job_id"]
            events = await read_events(api, job_id)
            missing = await api.get("/api/v1/jobs/nope/events")

    names = [name for name, _ in events]
    assert names[0] == "status" and names[-1] == "job"
    assert events[-1][1]["status"] == "completed" and events[-1][1]["output"]["provider"] == "mock"
    statuses = [data["status"] for name, data in events if name == "status"]
    assert "running" in statuses
    step_events = [(d["step_id"], d["phase"]) for n, d in events if n == "step"]
    assert ("explain", "started") in step_events and ("explain", "finished") in step_events
    assert step_events.index(("explain", "started")) < step_events.index(("explain", "finished"))
    assert {("bullet_text", "finished"), ("summary", "finished")} <= set(step_events)
    assert missing.status_code == 404
