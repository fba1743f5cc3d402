"""API keys own their jobs; only interpreter runs are jobs; Temporal down is a 503, not a 500."""

from __future__ import annotations

import json
import uuid

import httpx
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.db import JobFilter, count_jobs, insert_alert, insert_job
from core.models import Alert, Job, utcnow
from core.settings import Settings
from tests import harness
from tests.api_server import gateway
from tests.fakes.http_server import FakeHTTPServer, Response
from tests.fakes.llm_wire import openai_chat
from tests.test_api_jobs import poll

CHAT = "/openrouter/api/v1/chat/completions"
ALICE = {"Authorization": "Bearer alice-key-0123456789"}
BOB = {"Authorization": "Bearer bob-key-9876543210"}
OPS = {"Authorization": "Bearer ops-key-5555555555"}
BARE = {"X-API-Secret": "bare-key-without-a-name-42"}
QUICK = {"workflow_name": "quickstart", "input_data": {"topic": "owners"}}


def keyed(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "api_keys": [
                "alice:alice-key-0123456789",
                "bob:bob-key-9876543210",
                "ops:ops-key-5555555555",
                "bare-key-without-a-name-42",
            ],
            "api_admins": ["ops"],
            "llm_webhook_secret": "hook-secret-0123456789",
        }
    )


async def test_a_key_sees_and_acts_on_its_own_jobs_only(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", CHAT, openai_chat(json.dumps({"title": "T", "points": ["a", "b", "c"]})))
    upstream.route("POST", "/hook", Response(200, "ok"))
    cfg = keyed(settings)
    async with harness.running_worker(temporal_client, cfg, engine):
        async with gateway(cfg, engine=engine, temporal_client=temporal_client) as api:
            created = await api.post(
                "/api/v1/jobs", headers=ALICE, json={**QUICK, "webhook_url": f"{upstream.url}/hook"}
            )
            job_id = created.json()["job_id"]
            done = await poll(api, job_id, headers=ALICE)
            bare = await api.post("/api/v1/jobs", headers=BARE, json=QUICK)
            await poll(api, bare.json()["job_id"], headers=BARE)

            bob_reads = await api.get(f"/api/v1/jobs/{job_id}", headers=BOB)
            bob_status = await api.get(f"/api/v1/status/{job_id}", headers=BOB)
            bob_cancel = await api.post(f"/api/v1/jobs/{job_id}/cancel", headers=BOB)
            bob_rerun = await api.post(f"/api/v1/jobs/{job_id}/rerun", headers=BOB)
            bob_events = await api.get(f"/api/v1/jobs/{job_id}/events", headers=BOB)
            bob_bulk = await api.request(
                "DELETE", "/api/v1/jobs/bulk", headers=BOB, json={"job_ids": [job_id]}
            )
            bob_list = await api.get("/api/v1/jobs", headers=BOB)
            alice_list = await api.get("/api/v1/jobs", headers=ALICE)
            ops_reads = await api.get(f"/api/v1/jobs/{job_id}", headers=OPS)
            ops_list = await api.get("/api/v1/jobs", headers=OPS, params={"limit": 200})
            insert_alert(engine, Alert(level="WARNING", source="job", message="m", job_id=job_id))
            alice_alerts = await api.get("/api/v1/alerts", headers=ALICE, params={"job_id": job_id})
            bob_alerts = await api.get("/api/v1/alerts", headers=BOB, params={"job_id": job_id})
            bob_summary = await api.get("/api/v1/alerts/summary", headers=BOB)
            rerun = await api.post(
                f"/api/v1/jobs/{job_id}/rerun", headers=ALICE, json={}, params={}
            )
            # Internal workflows (the job's webhook delivery) are not jobs, even for an admin.
            run_id = done["temporal"]["run_id"]
            internal = f"{job_id}:webhook:{run_id}"
            internal_read = await api.get(f"/api/v1/jobs/{internal}", headers=OPS)
            internal_cancel = await api.post(f"/api/v1/jobs/{internal}/cancel", headers=OPS)

    assert done["status"] == "completed"
    for resp in (bob_reads, bob_status, bob_cancel, bob_rerun, bob_events):
        assert resp.status_code == 404, resp.text
        assert resp.json()["error"] == "JobNotFound"
    assert bob_bulk.json()["not_found"] == [job_id] and bob_bulk.json()["deleted_count"] == 0
    assert job_id not in {j["job_id"] for j in bob_list.json()["jobs"]}
    # Bob sees his own jobs only (other tests sharing the database may have made some).
    assert bob_list.json()["total"] == count_jobs(engine, JobFilter(owner="bob"))
    alice_ids = {j["job_id"] for j in alice_list.json()["jobs"]}
    assert job_id in alice_ids and bare.json()["job_id"] not in alice_ids
    assert ops_reads.status_code == 200
    assert {job_id, bare.json()["job_id"]} <= {j["job_id"] for j in ops_list.json()["jobs"]}
    assert rerun.status_code == 202, rerun.text
    assert len(alice_alerts.json()["items"]) == 1
    assert bob_alerts.json()["items"] == []
    assert bob_summary.json()["by_source"].get("job", 0) == 0
    assert internal_read.status_code == 404 and internal_cancel.status_code == 404


async def test_cancel_and_rerun_answer_503_while_temporal_is_down(
    settings: Settings, engine: Engine
) -> None:
    # A closed port: nothing listens, so every Temporal call fails fast.
    down = settings.model_copy(update={"temporal_address": "127.0.0.1:1"})
    job_id = str(uuid.uuid4())
    now = utcnow()
    insert_job(
        engine,
        Job(
            job_id=job_id,
            workflow_name="quickstart",
            workflow_version="1.0.0",
            status="failed",
            owner="anonymous",
            created_at=now,
            updated_at=now,
        ),
    )
    async with gateway(down, engine=engine) as api:
        cancel = await api.post(f"/api/v1/jobs/{job_id}/cancel")
        rerun = await api.post(f"/api/v1/jobs/{job_id}/rerun")
        bulk = await api.request(
            "DELETE", "/api/v1/jobs/bulk", json={"job_ids": [str(uuid.uuid4())]}
        )
        # The connection survives every one of them (no bare 500 dropping keep-alive).
        health = await api.get("/health")
    for resp in (cancel, rerun, bulk):
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"] and resp.json()["message"]
    assert health.status_code in (200, 503)


async def test_an_unexpected_exception_is_a_json_500_and_keeps_the_connection(
    settings: Settings, engine: Engine
) -> None:
    from api.main import create_app
    from tests.api_server import serve

    app = create_app(settings, engine=engine)

    @app.get("/boom")
    async def boom() -> None:
        raise KeyError("a bug")

    async with serve(app) as api:
        first = await api.get("/boom")
        second = await api.get("/health")
    assert first.status_code == 500
    assert first.json() == {
        "error": "InternalError",
        "message": "internal error; it has been logged",
        "detail": "internal error; it has been logged",
    }
    assert second.status_code in (200, 503)
    assert isinstance(api, httpx.AsyncClient)
