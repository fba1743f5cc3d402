"""End to end through the gateway: POST a job, poll it, check the mirror row (Postgres in CI)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.db import get_job
from core.settings import Settings
from tests import harness
from tests.api_server import gateway
from tests.fakes.http_server import FakeHTTPServer
from tests.fakes.llm_wire import openai_chat

CHAT = "/openrouter/api/v1/chat/completions"


async def poll(
    client: httpx.AsyncClient,
    job_id: str,
    within: float = 30,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        resp = await client.get(f"/api/v1/jobs/{job_id}", headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if body["status"] in ("completed", "failed", "cancelled", "timed_out"):
            return body
        assert asyncio.get_running_loop().time() < deadline, f"job still {body['status']}"
        await asyncio.sleep(0.2)


async def test_quickstart_end_to_end(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    reply = {
        "title": "Durable execution",
        "points": ["Survives crashes", "Retries for you", "Full history"],
    }
    upstream.route(
        "POST", CHAT, openai_chat(json.dumps(reply), prompt_tokens=50, completion_tokens=20)
    )
    async with harness.running_worker(temporal_client, settings, engine):
        async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
            resp = await api.post(
                "/api/v1/jobs",
                json={"workflow_name": "quickstart", "input_data": {"topic": "durable execution"}},
            )
            assert resp.status_code == 202, resp.text
            accepted = resp.json()
            assert accepted["status"] == "queued" and accepted["workflow_version"] == "1.0.0"
            job = await poll(api, accepted["job_id"])

    assert job["status"] == "completed", job
    assert job["output"]["title"] == "Durable execution"
    assert (
        job["output"]["summary"]
        == "Durable execution\n• Survives crashes\n• Retries for you\n• Full history"
    )
    assert job["metadata"]["total_tokens"] == 70
    assert [s["id"] for s in job["metadata"]["steps"]] == ["explain", "bullet_text", "summary"]
    assert job["temporal"]["workflow_id"] == accepted["job_id"] and job["temporal"]["run_id"]
    prompt = upstream.requests_to(CHAT)[0].json()["messages"][-1]["content"]
    assert "durable execution" in prompt and "{{include" not in prompt and "Never invent" in prompt

    row = get_job(engine, accepted["job_id"])
    assert row is not None and row.status == "completed" and row.output == job["output"]
    assert row.input_data == {"topic": "durable execution", "audience": "a busy software engineer"}
    assert row.started_at is not None and row.completed_at is not None


async def test_bad_requests_get_4xx_naming_the_problem(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
        unknown = await api.post("/api/v1/jobs", json={"workflow_name": "nope", "input_data": {}})
        missing = await api.post(
            "/api/v1/jobs", json={"workflow_name": "quickstart", "input_data": {}}
        )
        wrong_type = await api.post(
            "/api/v1/jobs",
            json={"workflow_name": "emergency_contacts", "input_data": {"lat": "north", "lng": 2}},
        )
        malformed = await api.post(
            "/api/v1/jobs",
            content=b'{"workflow_name": "quickstart",',
            headers={"Content-Type": "application/json"},
        )
        no_name = await api.post("/api/v1/jobs", json={"input_data": {}})
        unknown_job = await api.get("/api/v1/jobs/does-not-exist")

    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "input_data", "topic"]
    assert wrong_type.status_code == 422
    assert ["body", "input_data", "lat"] in [d["loc"] for d in wrong_type.json()["detail"]]
    assert malformed.status_code == 400
    assert no_name.status_code == 422 and no_name.json()["detail"][0]["loc"] == [
        "body",
        "workflow_name",
    ]
    assert unknown_job.status_code == 404


async def test_health_reports_database_and_temporal(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
        resp = await api.get("/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["components"]["database"]["status"] == "ok"
    assert body["components"]["temporal"]["status"] == "ok"


async def test_queued_job_shows_live_status_before_a_worker_runs_it(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", CHAT, openai_chat(json.dumps({"title": "t", "points": ["a", "b", "c"]})))
    async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
        resp = await api.post(
            "/api/v1/jobs", json={"workflow_name": "quickstart", "input_data": {"topic": "x"}}
        )
        job_id = resp.json()["job_id"]
        before = (await api.get(f"/api/v1/jobs/{job_id}")).json()
        assert before["status"] == "queued"
        # A worker that starts later picks the job up: nothing accepted is lost.
        async with harness.running_worker(temporal_client, settings, engine):
            done = await poll(api, job_id)
    assert done["status"] == "completed"


async def test_database_down_at_submit_the_job_is_accepted_and_runs(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    from core.db import make_engine

    upstream.route("POST", CHAT, openai_chat(json.dumps({"title": "T", "points": ["a", "b", "c"]})))
    down = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/unreachable")
    try:
        async with harness.running_worker(temporal_client, settings, engine):
            # The gateway starts and accepts although its database is unreachable ...
            async with gateway(settings, engine=down, temporal_client=temporal_client) as api:
                resp = await api.post(
                    "/api/v1/jobs",
                    json={"workflow_name": "quickstart", "input_data": {"topic": "x"}},
                )
                assert resp.status_code == 202, resp.text
                job = await poll(api, resp.json()["job_id"])
    finally:
        down.dispose()
    # ... reads the outcome from Temporal while the row is unreachable ...
    assert job["status"] == "completed" and job["output"]["title"] == "T"
    assert job["metadata"]["steps"][0]["id"] == "explain"
    # ... and the worker's mirror wrote the row into the real database.
    row = get_job(engine, job["job_id"])
    assert row is not None and row.status == "completed"
