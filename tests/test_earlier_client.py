"""The earlier service's real Next.js client, replayed call for call against the gateway.

The client authenticates with `X-API-Secret` (the same shared secret signs its callbacks),
submits on `POST /api/v1/workflow` with `user_id` and `priority`, polls `GET /api/v1/jobs/{id}`
until `completed`, `failed` or `cancelled`, receives callbacks at `/api/webhooks/llm-callback`
(checking `x-webhook-signature`, `job_id`, `payload.user_id || payload.result.metadata.user_id`
and `payload.result.output`), cancels with `DELETE /api/v1/jobs/bulk` and lists jobs on its
admin page with `status=all&limit=100&limit_results=7 Days`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.settings import Settings
from tests import harness
from tests.api_server import gateway
from tests.fakes.http_server import FakeHTTPServer, Request, Response
from tests.fakes.llm_wire import openai_chat, openai_chat_body, openai_error

SECRET = "nextjs-shared-secret-0123456789"
CLIENT = {"X-API-Secret": SECRET}
CHAT = "/openrouter/api/v1/chat/completions"
CALLBACK = "/api/webhooks/llm-callback"
CLIENT_STOPS_ON = ("completed", "failed", "cancelled")
USER = "123e4567-e89b-12d3-a456-426614174000"
REPO_DEFS = Path(__file__).resolve().parents[1] / "workflow_defs"


def llm_answers(req: Request) -> Response:
    """The provider: slow for topics asking for it, a 400 for `fail`, else a JSON reply."""
    prompt = json.dumps(req.json())
    if "topic-slow" in prompt:
        return Response(200, openai_chat_body(json.dumps({"title": "T", "points": ["a"]})), delay=8)
    if "topic-fail" in prompt:
        return openai_error(400, "context length exceeded")
    return openai_chat(json.dumps({"title": "T", "points": ["a", "b", "c"]}))


@pytest.fixture
def client_settings(settings: Settings, tmp_path: Path) -> Settings:
    # The shipped definitions plus one with a short job timeout, for the timed-out case.
    defs = tmp_path / "defs"
    shutil.copytree(REPO_DEFS, defs, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    quick = json.loads((REPO_DEFS / "quickstart.json").read_text())
    quick.update(name="quickstart_deadline", timeout_seconds=5)
    (defs / "quickstart_deadline.json").write_text(json.dumps(quick))
    return settings.model_copy(
        update={"api_keys": [SECRET], "llm_webhook_secret": SECRET, "workflow_defs_dir": defs}
    )


@pytest.fixture
async def api(
    temporal_client: Client, client_settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> AsyncIterator[httpx.AsyncClient]:
    upstream.route("POST", CHAT, llm_answers)
    upstream.route("POST", CALLBACK, Response(200, {"success": True}))
    async with harness.running_worker(temporal_client, client_settings, engine):
        async with gateway(client_settings, engine=engine, temporal_client=temporal_client) as c:
            yield c


async def submit(
    api: httpx.AsyncClient, upstream: FakeHTTPServer, workflow: str, topic: str, **extra: Any
) -> dict[str, Any]:
    """`submitWorkflow()` of the client: what it sends, byte for byte in shape."""
    resp = await api.post(
        "/api/v1/workflow",
        headers=CLIENT,
        json={
            "workflow_name": workflow,
            "input_data": {"topic": topic},
            "user_id": USER,
            "webhook_url": f"{upstream.url}{CALLBACK}",
            "priority": 5,
            **extra,
        },
    )
    assert resp.status_code == 202, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def client_poll(
    api: httpx.AsyncClient, job_id: str, within: float = 30
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The client's polling loop: stops only on completed, failed or cancelled."""
    seen: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + within
    while True:
        resp = await api.get(f"/api/v1/jobs/{job_id}", headers=CLIENT)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        seen.append(body)
        if body["status"] in CLIENT_STOPS_ON:
            return body, seen
        assert asyncio.get_running_loop().time() < deadline, f"poll never ended: {body['status']}"
        await asyncio.sleep(0.1)


async def callbacks(
    upstream: FakeHTTPServer, job_id: str, event: str, within: float = 20
) -> list[tuple[Request, dict[str, Any]]]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        found = [
            (req, req.json())
            for req in upstream.requests_to(CALLBACK)
            if req.json().get("job_id") == job_id and req.json().get("event") == event
        ]
        if found:
            return found
        assert asyncio.get_running_loop().time() < deadline, f"no {event} callback for {job_id}"
        await asyncio.sleep(0.1)


def client_accepts(req: Request, payload: dict[str, Any], job_id: str) -> str:
    """The client's callback route: verify the signature, then read job_id and user_id."""
    signature = req.headers["x-webhook-signature"]
    assert signature.startswith("sha256=")
    expected = hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature.removeprefix("sha256="), expected)
    assert payload["job_id"] == job_id
    user_id = payload.get("user_id") or payload["result"]["metadata"]["user_id"]
    assert user_id == USER
    return str(user_id)


async def test_submit_poll_callback_status_and_admin_list(
    api: httpx.AsyncClient, upstream: FakeHTTPServer, temporal_client: Client
) -> None:
    accepted = await submit(
        api,
        upstream,
        "quickstart",
        "topic-ok",
        username="sam",
        action="generate",
        debug_mode=True,
        client_build="2024.12",  # unknown to us: ignored, not a 422
    )
    assert {"job_id", "status", "created_at", "status_url"} <= accepted.keys()
    assert accepted["status"] == "queued"
    job_id = accepted["job_id"]

    final, seen = await client_poll(api, job_id)
    assert final["status"] == "completed" and final["error_message"] is None
    assert final["progress_percentage"] == 100
    assert final["user_id"] == USER and final["priority"] == 5
    for body in seen:
        assert {"current_step_id", "current_step_name", "progress_percentage"} <= body.keys()
        assert "error" in body and "progress" in body

    [(req, payload)] = await callbacks(upstream, job_id, "workflow.completed")
    client_accepts(req, payload, job_id)
    assert req.headers["x-webhook-event"] == "workflow.completed"
    assert payload["result"]["output"]["title"] == "T"
    assert payload["output"] == payload["result"]["output"]  # today's field stays
    assert payload["result"]["steps_executed"] == ["explain", "bullet_text", "summary"]
    assert payload["result"]["metadata"]["username"] == "sam"
    cost = payload["cost_data"]
    assert cost["total_tokens"] > 0 and cost["cost_usd"] >= 0
    assert [c["step_id"] for c in cost["llm_calls"]] == ["explain"]
    assert {"model", "total_tokens", "cost_usd"} <= cost["llm_calls"][0].keys()
    assert isinstance(payload["duration_ms"], int)
    assert datetime.fromisoformat(payload["timestamp"]).tzinfo is not None

    # debug_mode: one llm.step.completed event per LLM step, signed the same way.
    [(step_req, step_event)] = await callbacks(upstream, job_id, "llm.step.completed")
    client_accepts(step_req, step_event, job_id)
    assert step_event["step_id"] == "explain"
    assert step_event["result"]["title"] == "T"
    assert step_event["tokens"]["total"] == cost["llm_calls"][0]["total_tokens"]
    assert {"cost_usd", "duration_ms"} <= step_event.keys()

    status = (await api.get(f"/api/v1/status/{job_id}", headers=CLIENT)).json()
    assert status["status"] == "completed" and isinstance(status["duration_ms"], int)
    assert status["result"]["steps_executed"] == ["explain", "bullet_text", "summary"]
    assert status["result"]["metadata"]["llm_calls"][0]["step_id"] == "explain"

    # The admin jobs page.
    page = await api.get(
        "/api/v1/jobs",
        headers=CLIENT,
        params={"status": "all", "limit": 100, "limit_results": "7 Days"},
    )
    assert page.status_code == 200, page.text
    listing = page.json()
    row = next(j for j in listing["jobs"] if j["job_id"] == job_id)
    assert row["status"] == "completed" and row["priority"] == 5
    assert row["user_id"] == USER and row["username"] == "sam" and row["action"] == "generate"
    assert row["duration_ms"] is not None and row["error_message"] is None
    assert {"started_at", "completed_at", "created_at", "workflow_name"} <= row.keys()
    assert listing["total"] >= 1 and "next_cursor" in listing and "items" in listing
    mine = await api.get(
        "/api/v1/jobs", headers=CLIENT, params={"user_id": USER, "limit_results": "Today"}
    )
    assert {j["user_id"] for j in mine.json()["jobs"]} == {USER}
    bad = await api.get("/api/v1/jobs", headers=CLIENT, params={"limit_results": "forever"})
    assert bad.status_code == 422 and bad.json()["error"] == "ValidationError"

    # priority 5 runs as Temporal priority key 2 (high).
    desc = await temporal_client.get_workflow_handle(job_id).describe()
    assert desc.raw_description.workflow_execution_info.priority.priority_key == 2


async def test_failed_and_timed_out_jobs_end_the_client_poll(
    api: httpx.AsyncClient, upstream: FakeHTTPServer
) -> None:
    failed = await submit(api, upstream, "quickstart", "topic-fail")
    final, _ = await client_poll(api, failed["job_id"])
    assert final["status"] == "failed"
    assert isinstance(final["error_message"], str) and "400" in final["error_message"]
    [(req, payload)] = await callbacks(upstream, failed["job_id"], "workflow.failed")
    client_accepts(req, payload, failed["job_id"])
    assert payload["error_message"] == payload["error"]["message"]

    slow = await submit(api, upstream, "quickstart_deadline", "topic-slow")
    job_id = slow["job_id"]
    # While it runs, the admin detail speaks the earlier vocabulary.
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        running = (await api.get(f"/api/v1/status/{job_id}", headers=CLIENT)).json()
        if running["status"] == "processing" and running["current_step"]:
            break
        assert asyncio.get_running_loop().time() < deadline, running
        await asyncio.sleep(0.1)
    assert running["current_step"] == "explain"
    assert running["steps_completed"] == 0 and running["total_steps"] == 3

    final, _ = await client_poll(api, job_id)
    assert final["status"] == "failed" and "timed out" in final["error_message"]
    detail = (await api.get(f"/api/v1/status/{job_id}", headers=CLIENT)).json()
    assert detail["status"] == "failed" and "timed out" in detail["error_message"]
    # Clients of this API (bearer) see the precise status.
    precise = await api.get(f"/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {SECRET}"})
    assert precise.json()["status"] == "timed_out"


async def test_bulk_delete_cancels_running_and_hides_finished_jobs(
    api: httpx.AsyncClient, upstream: FakeHTTPServer
) -> None:
    done = (await submit(api, upstream, "quickstart", "topic-ok"))["job_id"]
    await client_poll(api, done)
    running = (await submit(api, upstream, "quickstart", "topic-slow"))["job_id"]
    unknown = str(uuid.uuid4())

    resp = await api.request(
        "DELETE", "/api/v1/jobs/bulk", headers=CLIENT, json={"job_ids": [done, running, unknown]}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["deleted_count"] == 2 and sorted(body["job_ids"]) == sorted([done, running])
    assert body["cancelled"] == [running] and body["not_found"] == [unknown]

    final, _ = await client_poll(api, running)
    assert final["status"] == "cancelled"
    listed = (await api.get("/api/v1/jobs", headers=CLIENT, params={"status": "all"})).json()
    assert done not in {j["job_id"] for j in listed["jobs"]}
    assert (await api.get(f"/api/v1/jobs/{done}", headers=CLIENT)).status_code == 200

    too_many = await api.request(
        "DELETE", "/api/v1/jobs/bulk", headers=CLIENT, json={"job_ids": ["x"] * 101}
    )
    assert too_many.status_code == 422 and too_many.json()["error"] == "ValidationError"


async def test_every_error_body_carries_error_and_message(
    api: httpx.AsyncClient, upstream: FakeHTTPServer
) -> None:
    cases = {
        "WorkflowNotFound": await api.post(
            "/api/v1/workflow", headers=CLIENT, json={"workflow_name": "nope", "input_data": {}}
        ),
        "JobNotFound": await api.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=CLIENT),
        "InvalidAPISecret": await api.get("/api/v1/jobs", headers={"X-API-Secret": "wrong"}),
        "ValidationError": await api.post(
            "/api/v1/jobs", headers=CLIENT, json={"workflow_name": "quickstart", "priority": 11}
        ),
        "InvalidJSON": await api.post(
            "/api/v1/jobs", headers={**CLIENT, "Content-Type": "application/json"}, content="{"
        ),
    }
    for code, resp in cases.items():
        body = resp.json()
        assert body["error"] == code, (code, body)
        assert isinstance(body["message"], str) and body["message"]
        assert "detail" in body
    assert cases["ValidationError"].json()["detail"][0]["loc"] == ["body", "priority"]
    assert "priority" in cases["ValidationError"].json()["message"]
    # The current API still rejects fields it does not know; only the earlier route ignores them.
    strict = await api.post(
        "/api/v1/jobs",
        headers=CLIENT,
        json={"workflow_name": "quickstart", "input_data": {"topic": "x"}, "extra": 1},
    )
    assert strict.status_code == 422
