"""What the earlier service's clients and operators read besides jobs: GET /health in its
shape (`status` healthy/degraded/unhealthy and a `services` map), and its README's
monitoring SQL, run verbatim against the mirror."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core import db
from core.models import Job, utcnow
from core.settings import Settings
from tests.api_server import gateway

# The earlier README's queries, character for character.
RECENT = (
    "SELECT job_id, status, workflow_name, created_at, completed_at FROM workflow_jobs "
    "ORDER BY created_at DESC LIMIT 10;"
)
FAILED = (
    "SELECT job_id, workflow_name, error_message FROM workflow_jobs WHERE status = 'failed' "
    "ORDER BY created_at DESC;"
)


async def test_health_answers_in_the_earlier_shape_and_keeps_components(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    redis_url = os.environ.get("TEST_REDIS_URL")
    if not redis_url:
        pytest.skip("TEST_REDIS_URL is not set")
    with_redis = settings.model_copy(update={"redis_url": redis_url})
    # Nothing listens on port 9 (discard): Redis is down for this gateway.
    redis_down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"})
    async with gateway(with_redis, engine=engine, temporal_client=temporal_client) as api:
        healthy = await api.get("/health")
    async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
        no_redis = await api.get("/health")
    async with gateway(redis_down, engine=engine, temporal_client=temporal_client) as api:
        degraded = await api.get("/health")

    assert healthy.status_code == 200, healthy.text
    body = healthy.json()
    assert body["status"] == "healthy"
    assert {name: s["status"] for name, s in body["services"].items()} == {
        "database": "healthy",
        "temporal": "healthy",
        "redis": "healthy",
    }
    assert body["components"]["database"]["status"] == "ok"  # what this gateway answered before

    assert no_redis.status_code == 200 and no_redis.json()["status"] == "healthy"
    assert no_redis.json()["services"]["redis"]["status"] == "disabled"

    # Redis is optional: jobs still run, so the gateway stays in rotation (200).
    assert degraded.status_code == 200 and degraded.json()["status"] == "degraded"
    assert degraded.json()["services"]["redis"]["status"] == "unhealthy"


async def test_the_earlier_readme_monitoring_queries_run_unchanged(engine: Engine) -> None:
    tag = uuid.uuid4().hex[:8]
    now = utcnow()
    done = Job(
        job_id=f"legacy-ok-{tag}",
        workflow_name="emergency_contacts",
        workflow_version="3.1.0",
        status="completed",
        created_at=now + timedelta(days=3650),  # newest of anything the suite stores
        completed_at=now + timedelta(days=3650, seconds=4),
    )
    failed = Job(
        job_id=f"legacy-failed-{tag}",
        workflow_name="ticket_triage",
        workflow_version="1.0.0",
        status="failed",
        error={"type": "UPSTREAM_ERROR", "message": f"crm answered 503 ({tag})"},
        created_at=now + timedelta(days=3650, seconds=1),
    )
    hidden = Job(
        job_id=f"legacy-deleted-{tag}",
        workflow_name="ticket_triage",
        workflow_version="1.0.0",
        status="failed",
        error={"type": "UPSTREAM_ERROR", "message": "deleted"},
        created_at=now + timedelta(days=3650, seconds=2),
    )
    for job in (done, failed, hidden):
        db.insert_job(engine, job)
    db.hide_jobs(engine, [hidden.job_id])
    try:
        with engine.connect() as conn:
            recent = conn.execute(text(RECENT)).all()
            failures = conn.execute(text(FAILED)).all()
        assert [row.job_id for row in recent[:2]] == [failed.job_id, done.job_id]
        assert recent[1].status == "completed" and recent[1].workflow_name == "emergency_contacts"
        assert recent[1].completed_at is not None
        assert failures[0].job_id == failed.job_id
        assert failures[0].error_message == f"crm answered 503 ({tag})"
        assert hidden.job_id not in {row.job_id for row in recent + failures}
    finally:
        for job in (done, failed, hidden):
            db.delete_job(engine, job.job_id)
