"""GET /api/v1/jobs/{id} served by the fast path answers exactly what the route answers, and a
polled unfinished job's row is refreshed in the background (batched), not read per poll."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from sqlalchemy.engine import Engine
from temporalio.client import Client

from api.deps import get_app_settings
from api.main import create_app
from api.running_rows import RunningRows
from core.contracts import MirrorUpdate
from core.db import get_job, insert_job, upsert_job
from core.models import Job, utcnow
from core.settings import Settings
from tests.api_server import serve

ALICE = {"Authorization": "Bearer alice-key-0123456789"}
BOB = {"Authorization": "Bearer bob-key-9876543210"}
EARLIER = {"X-API-Secret": "alice-key-0123456789"}


def _row(engine: Engine, status: str, owner: str = "alice") -> str:
    now = utcnow()
    job_id = f"fast-{uuid.uuid4()}"
    done = status in ("completed", "failed", "timed_out", "cancelled")
    insert_job(
        engine,
        Job(
            job_id=job_id,
            workflow_name="quickstart",
            workflow_version="1.0.0",
            status=status,
            owner=owner,
            output={"title": "T", "points": ["a"], "summary": "s"}
            if status == "completed"
            else None,
            error={"type": "WORKFLOW_TIMEOUT", "message": "too slow"}
            if status == "timed_out"
            else None,
            job_metadata={"duration_ms": 40, "total_tokens": 12, "steps": []} if done else None,
            created_at=now - timedelta(seconds=2),
            started_at=now - timedelta(seconds=2),
            completed_at=now if done else None,
            updated_at=now,
        ),
    )
    return job_id


async def test_the_fast_path_answers_what_the_route_answers(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    cfg = settings.model_copy(
        update={"api_keys": ["alice:alice-key-0123456789", "bob:bob-key-9876543210"]}
    )
    completed, timed_out = _row(engine, "completed"), _row(engine, "timed_out")
    requests = [
        (completed, ALICE),
        (timed_out, ALICE),
        (timed_out, EARLIER),  # the earlier service's clients read timed_out as failed
        (completed, BOB),  # another key's job: 404
        (completed, {}),  # no key: 401
        (f"missing-{uuid.uuid4()}", ALICE),
    ]

    async def answers(route_only: bool) -> list[tuple[int, bytes, str | None]]:
        app = create_app(cfg, engine=engine, temporal_client=temporal_client)
        if route_only:  # any override sends every read to the route
            app.dependency_overrides[get_app_settings] = lambda: cfg
        async with serve(app) as api:
            out = []
            for job_id, headers in requests:
                resp = await api.get(f"/api/v1/jobs/{job_id}", headers=headers)
                out.append((resp.status_code, resp.content, resp.headers.get("content-type")))
            metrics = (await api.get("/metrics")).text
        return [*out, (0, metrics.encode(), None)]

    fast, route = await answers(False), await answers(True)
    assert [a[:3] for a in fast[:-1]] == [a[:3] for a in route[:-1]]
    assert [status for status, _, _ in fast[:-1]] == [200, 200, 200, 404, 401, 404]
    assert b'"status":"failed"' in fast[2][1] and b'"status":"timed_out"' in fast[1][1]
    # Served by either, a read counts under its route template.
    line = 'llmflow_http_requests_total{method="GET",route="/api/v1/jobs/{job_id}",status="200"} 3'
    assert line in fast[-1][1].decode() and line in route[-1][1].decode()


async def test_polled_unfinished_rows_are_refreshed_in_one_batch(engine: Engine) -> None:
    rows = RunningRows(refresh_every=0.05, max_age=1.0)
    running, queued = _row(engine, "running"), _row(engine, "queued")
    for job_id in (running, queued):
        row = get_job(engine, job_id)
        assert row is not None
        rows.put(row, read_started=_now())
    assert rows.get(running) is not None and len(rows) == 2
    # Unchanged rows are only re-stamped: nothing is read in full.
    assert await rows.refresh_once(engine) == 0 and rows.get(running) is not None
    # The worker's final mirror write: the next refresh drops the row, so a GET reads it.
    upsert_job(
        engine,
        MirrorUpdate(
            job_id=running,
            workflow_name="quickstart",
            workflow_version="1.0.0",
            status="completed",
            output={"ok": True},
        ),
    )
    assert await rows.refresh_once(engine) == 1
    assert rows.get(running) is None and rows.get(queued) is not None
    # A row not refreshed within max_age is not served.
    stale = RunningRows(max_age=0.0)
    row = get_job(engine, queued)
    assert row is not None
    stale.put(row, read_started=_now() - 1)
    assert stale.get(queued) is None


def _now() -> float:
    return time.monotonic()
