"""Signed completion webhooks and the error contract across every surface."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.contracts import WebhookDeliveryResult
from core.db import get_job, list_deliveries
from core.settings import Settings
from tests import harness
from tests.api_server import gateway
from tests.conftest import OPENROUTER_KEY
from tests.fakes.http_server import FakeHTTPServer, Request, Response
from tests.fakes.llm_wire import openai_chat, openai_error
from tests.test_api_jobs import poll

CHAT = "/openrouter/api/v1/chat/completions"
HOOK = "/hooks/receiver"
SECRET = "per-job-secret-7d1e2f"
QUICK = {"workflow_name": "quickstart", "input_data": {"topic": "webhooks"}}


async def wait_for_delivery(client: Client, job_id: str) -> WebhookDeliveryResult:
    desc = await client.get_workflow_handle(job_id).describe()
    handle = client.get_workflow_handle(
        f"{job_id}:webhook:{desc.run_id}", result_type=WebhookDeliveryResult
    )
    return await handle.result()


def verify(req: Request, secret: str) -> dict[str, Any]:
    expected = "sha256=" + hmac.new(secret.encode(), req.body, hashlib.sha256).hexdigest()
    assert req.headers["x-webhook-signature"] == expected
    msg = f"{req.headers['webhook-id']}.{req.headers['webhook-timestamp']}.".encode() + req.body
    std = base64.b64encode(hmac.new(secret.encode(), msg, hashlib.sha256).digest()).decode()
    assert req.headers["webhook-signature"] == f"v1,{std}"
    assert req.headers["x-webhook-id"] == req.headers["webhook-id"]
    assert req.headers["user-agent"].startswith("LLM-Workflow-Service/")
    assert req.headers["content-type"] == "application/json"
    return json.loads(req.body)


async def test_completed_job_posts_a_signed_webhook_once(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", CHAT, openai_chat(json.dumps({"title": "T", "points": ["a", "b", "c"]})))
    upstream.route(
        "POST", HOOK, [Response(503, "busy", headers={"Retry-After": "1"}), Response(200, "ok")]
    )
    body = {**QUICK, "webhook_url": upstream.url + HOOK, "webhook_secret": SECRET}
    async with harness.running_worker(temporal_client, settings, engine):
        async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
            job_id = (await api.post("/api/v1/jobs", json=body)).json()["job_id"]
            job = await poll(api, job_id)
            delivery = await wait_for_delivery(temporal_client, job_id)
        history = await temporal_client.get_workflow_handle(job_id).fetch_history()
        child_id = f"{job_id}:webhook:{job['temporal']['run_id']}"
        child_history = await temporal_client.get_workflow_handle(child_id).fetch_history()

    assert job["status"] == "completed"
    assert delivery.delivered and delivery.attempts == 2 and delivery.status_code == 200
    attempts = upstream.requests_to(HOOK)
    assert len(attempts) == 2
    assert attempts[0].headers["x-webhook-id"] == attempts[1].headers["x-webhook-id"]
    payload = verify(attempts[1], SECRET)
    assert attempts[1].headers["x-webhook-event"] == "workflow.completed"
    assert payload["job_id"] == job_id and payload["status"] == "completed"
    assert payload["output"] == job["output"] and "error" not in payload
    assert payload["metadata"]["steps"][0]["id"] == "explain"
    # The per-job secret lives in the database only: never in Temporal history.
    assert SECRET not in history.to_json() and SECRET not in child_history.to_json()
    rows = list_deliveries(engine, job_id)
    assert [(r.attempt, r.outcome, r.status_code) for r in rows] == [
        (1, "retrying", 503),
        (2, "delivered", 200),
    ]


async def test_receiver_gone_gives_up_and_raises_an_alert(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", CHAT, openai_chat(json.dumps({"title": "T", "points": ["a", "b", "c"]})))
    upstream.route("POST", HOOK, Response(410, "gone"))
    hooked = settings.model_copy(update={"llm_webhook_secret": "env-secret-abc123"})
    body = {**QUICK, "webhook_url": upstream.url + HOOK}
    async with harness.running_worker(temporal_client, hooked, engine):
        async with gateway(hooked, engine=engine, temporal_client=temporal_client) as api:
            job_id = (await api.post("/api/v1/jobs", json=body)).json()["job_id"]
            await poll(api, job_id)
            delivery = await wait_for_delivery(temporal_client, job_id)
    assert not delivery.delivered and delivery.status_code == 410
    assert len(upstream.requests_to(HOOK)) == 1
    verify(upstream.requests_to(HOOK)[0], "env-secret-abc123")
    with engine.connect() as conn:
        alerts = conn.execute(
            text("SELECT level, source FROM alerts WHERE job_id = :j"), {"j": job_id}
        ).all()
    assert [tuple(a) for a in alerts] == [("ERROR", "webhook")]
    assert [r.outcome for r in list_deliveries(engine, job_id)] == ["failed"]


async def test_provider_error_echoing_the_key_leaks_nowhere(
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = f"Invalid API key: {OPENROUTER_KEY} (Authorization: Bearer {OPENROUTER_KEY})"
    upstream.route("POST", CHAT, openai_error(401, echo))
    upstream.route("POST", HOOK, Response(200, "ok"))
    body = {**QUICK, "webhook_url": upstream.url + HOOK, "webhook_secret": SECRET}
    async with harness.running_worker(temporal_client, settings, engine):
        async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
            job_id = (await api.post("/api/v1/jobs", json=body)).json()["job_id"]
            job = await poll(api, job_id)
            api_text = (await api.get(f"/api/v1/jobs/{job_id}")).text
            await wait_for_delivery(temporal_client, job_id)
        history = await temporal_client.get_workflow_handle(job_id).fetch_history()

    assert job["status"] == "failed"
    error = job["error"]
    assert (
        error["step_id"] == "explain"
        and error["type"] == "AUTH_ERROR"
        and error["category"] == "CONFIG_ERROR"
    )
    assert "[REDACTED]" in error["message"]
    webhook = upstream.requests_to(HOOK)[0]
    assert webhook.headers["x-webhook-event"] == "workflow.failed"
    webhook_error = json.loads(webhook.body)["error"]
    assert webhook_error == error  # the same redacted ErrorContext on every surface
    row = get_job(engine, job_id)
    assert row is not None and row.error == error
    with engine.connect() as conn:
        dumped = json.dumps(
            [
                list(r)
                for r in conn.execute(text("SELECT * FROM jobs WHERE job_id = :j"), {"j": job_id})
            ],
            default=str,
        )
        dumped += json.dumps(
            [
                list(r)
                for r in conn.execute(
                    text("SELECT * FROM webhook_deliveries WHERE job_id = :j"), {"j": job_id}
                )
            ],
            default=str,
        )
    surfaces = {
        "api": api_text,
        "webhook": webhook.body.decode(),
        "database": dumped,
        "logs": caplog.text,
        "temporal history": history.to_json(),
    }
    for name, content in surfaces.items():
        assert OPENROUTER_KEY not in content, f"the key leaked into the {name}"
