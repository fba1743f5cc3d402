"""The gateway's REST contract beyond the happy path: auth, limits, idempotency, list, cancel,
and the earlier service's aliases."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client

from api.auth import ProductionWithoutKeys
from api.main import create_app
from core.db import get_job
from core.settings import Settings
from tests import harness
from tests.api_server import gateway
from tests.fakes.http_server import FakeHTTPServer
from tests.fakes.llm_wire import openai_chat
from tests.test_api_jobs import poll

CHAT = "/openrouter/api/v1/chat/completions"
QUICK = {"workflow_name": "quickstart", "input_data": {"topic": "idempotency"}}


def route_quickstart(upstream: FakeHTTPServer) -> None:
    upstream.route("POST", CHAT, openai_chat(json.dumps({"title": "T", "points": ["a", "b", "c"]})))


def test_production_without_api_keys_refuses_to_start(settings: Settings) -> None:
    prod = settings.model_copy(update={"environment": "production", "api_keys": []})
    with pytest.raises(ProductionWithoutKeys, match="API_KEYS"):
        create_app(prod)


async def test_api_keys_guard_every_v1_route(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    keyed = settings.model_copy(update={"api_keys": ["key-one-abcdef", "key-two-ghijkl"]})
    async with gateway(keyed, engine=engine, temporal_client=temporal_client) as api:
        no_key = await api.post("/api/v1/jobs", json=QUICK)
        wrong = await api.get("/api/v1/jobs", headers={"Authorization": "Bearer nope"})
        bearer = await api.get("/api/v1/jobs", headers={"Authorization": "Bearer key-two-ghijkl"})
        alias = await api.get("/api/v1/jobs", headers={"X-API-Secret": "key-one-abcdef"})
        legacy = await api.get("/api/v1/status/x")
        health = await api.get("/health")
    assert no_key.status_code == 401 and no_key.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert bearer.status_code == 200 and alias.status_code == 200
    assert legacy.status_code == 401
    assert health.status_code == 200  # liveness stays open for orchestrators


async def test_oversized_body_is_413(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    small = settings.model_copy(update={"max_request_bytes": 1000})
    async with gateway(small, engine=engine, temporal_client=temporal_client) as api:
        big = {"workflow_name": "quickstart", "input_data": {"topic": "x" * 2000}}
        resp = await api.post("/api/v1/jobs", json=big)

        async def chunks():  # no Content-Length: the limit applies while streaming
            for _ in range(5):
                yield b" " * 400

        streamed = await api.post(
            "/api/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert resp.status_code == 413 and "MAX_REQUEST_BYTES" in resp.json()["detail"]
    assert streamed.status_code == 413


async def test_idempotency_key_same_body_same_job_other_body_rejected(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    route_quickstart(upstream)
    key = f"order-{uuid.uuid4()}"
    keyed = settings.model_copy(update={"api_keys": ["caller-a-123456", "caller-b-654321"]})
    a = {"Authorization": "Bearer caller-a-123456", "Idempotency-Key": key}
    b = {"Authorization": "Bearer caller-b-654321", "Idempotency-Key": key}
    async with harness.running_worker(temporal_client, settings, engine):
        async with gateway(keyed, engine=engine, temporal_client=temporal_client) as api:
            first, second = await asyncio.gather(
                api.post("/api/v1/jobs", json=QUICK, headers=a),
                api.post("/api/v1/jobs", json=QUICK, headers=a),
            )
            job_id = first.json()["job_id"]
            await poll(api, job_id, headers=a)
            after = await api.post("/api/v1/jobs", json=QUICK, headers=a)
            other_body = await api.post(
                "/api/v1/jobs", json={**QUICK, "input_data": {"topic": "else"}}, headers=a
            )
            other_caller = await api.post("/api/v1/jobs", json=QUICK, headers=b)

    assert {first.status_code, second.status_code} <= {200, 202} and 202 in {
        first.status_code,
        second.status_code,
    }
    assert second.json()["job_id"] == job_id
    assert after.status_code == 200 and after.json()["job_id"] == job_id
    assert after.json()["status"] == "completed" and after.headers["idempotent-replayed"] == "true"
    assert other_body.status_code == 422
    assert other_body.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert other_caller.status_code == 202 and other_caller.json()["job_id"] != job_id
    handles = [w async for w in temporal_client.list_workflows(f'WorkflowId = "{job_id}"')]
    assert len(handles) == 1  # one workflow for the key, however many requests


async def test_list_jobs_filters_and_pages(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    route_quickstart(upstream)
    async with harness.running_worker(temporal_client, settings, engine):
        async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
            ids = [(await api.post("/api/v1/jobs", json=QUICK)).json()["job_id"] for _ in range(3)]
            for job_id in ids:
                await poll(api, job_id)
            page1 = (
                await api.get("/api/v1/jobs", params={"workflow_name": "quickstart", "limit": 2})
            ).json()
            page2 = (
                await api.get(
                    "/api/v1/jobs",
                    params={
                        "workflow_name": "quickstart",
                        "limit": 2,
                        "cursor": page1["next_cursor"],
                    },
                )
            ).json()
            completed = (
                await api.get("/api/v1/jobs", params={"status": "completed", "limit": 200})
            ).json()
            bad_status = await api.get("/api/v1/jobs", params={"status": "weird"})
            bad_cursor = await api.get("/api/v1/jobs", params={"cursor": "garbage"})
    listed = [j["job_id"] for j in page1["items"] + page2["items"]]
    assert listed[:3] == list(reversed(ids))  # newest first, no overlap between pages
    assert len(set(listed)) == len(listed)
    assert set(ids) <= {j["job_id"] for j in completed["items"]}
    assert bad_status.status_code == 422 and bad_cursor.status_code == 422


async def test_cancel_a_running_job(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    slow = settings.model_copy(
        update={"llm_default_provider": "mock", "llm_mock_latency_ms": 30000}
    )
    async with harness.running_worker(temporal_client, slow, engine):
        async with gateway(slow, engine=engine, temporal_client=temporal_client) as api:
            job_id = (await api.post("/api/v1/jobs", json=QUICK)).json()["job_id"]
            for _ in range(100):
                if (await api.get(f"/api/v1/jobs/{job_id}")).json()["status"] == "running":
                    break
                await asyncio.sleep(0.1)
            cancel = await api.post(f"/api/v1/jobs/{job_id}/cancel")
            job = await poll(api, job_id)
            again = await api.post(f"/api/v1/jobs/{job_id}/cancel")
            missing = await api.post("/api/v1/jobs/nope/cancel")
    assert cancel.status_code == 202 and cancel.json()["cancel_requested"] is True
    assert job["status"] == "cancelled" and job["error"]["type"] == "CANCELLED"
    # The step that was running says so: cancelled, after the attempt it had started.
    explain = next(r for r in job["metadata"]["steps"] if r["id"] == "explain")
    assert explain["status"] == "cancelled" and explain["attempts"] == 1, explain
    assert explain["started_at"] is not None and explain["duration_ms"] is not None
    assert again.status_code == 409 and missing.status_code == 404
    row = get_job(engine, job_id)
    assert row is not None and row.status == "cancelled"


async def test_earlier_service_aliases(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    route_quickstart(upstream)
    async with harness.running_worker(temporal_client, settings, engine):
        async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
            created = await api.post("/api/v1/workflow", json=QUICK)
            body = created.json()
            await poll(api, body["job_id"])
            status = await api.get(body["status_url"])
    assert created.status_code == 202
    assert body["status_url"].endswith(f"/api/v1/status/{body['job_id']}")
    assert status.status_code == 200
    result = status.json()["result"]
    assert result["output"]["title"] == "T"
    assert result["steps_executed"] == ["explain", "bullet_text", "summary"]
    assert status.json()["status"] == "completed"


async def test_webhook_url_is_checked_at_submit(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    strict = settings.model_copy(
        update={"webhook_allow_private": False, "llm_webhook_secret": "s3cret-value"}
    )
    async with gateway(strict, engine=engine, temporal_client=temporal_client) as api:
        blocked = await api.post(
            "/api/v1/jobs", json={**QUICK, "webhook_url": "http://169.254.169.254/latest"}
        )
        scheme = await api.post("/api/v1/jobs", json={**QUICK, "webhook_url": "file:///etc/passwd"})
    no_secret = settings.model_copy(update={"llm_webhook_secret": None})
    async with gateway(no_secret, engine=engine, temporal_client=temporal_client) as api:
        unsigned = await api.post(
            "/api/v1/jobs", json={**QUICK, "webhook_url": "https://example.com/hook"}
        )
    assert blocked.status_code == 422 and blocked.json()["detail"][0]["loc"] == [
        "body",
        "webhook_url",
    ]
    assert scheme.status_code == 422
    assert unsigned.status_code == 422 and unsigned.json()["detail"][0]["loc"] == [
        "body",
        "webhook_secret",
    ]


def test_openapi_documents_every_route_with_auth_and_examples(settings: Settings) -> None:
    spec = create_app(settings).openapi()
    expected = {
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/cancel",
        "/api/v1/workflow",
        "/api/v1/status/{job_id}",
        "/api/v1/workflows",
        "/api/v1/workflows/{name}",
        "/api/v1/workflows/validate",
        "/api/v1/workflows/{name}/graph",
        "/api/v1/health/detailed",
        "/health",
    }
    assert expected <= set(spec["paths"])
    schemes = spec["components"]["securitySchemes"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schemes)
    post = spec["paths"]["/api/v1/jobs"]["post"]
    assert {"202", "404", "422", "503"} <= set(post["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    for model in ("JobCreate", "JobAccepted", "JobView"):
        assert spec["components"]["schemas"][model].get("examples"), model
