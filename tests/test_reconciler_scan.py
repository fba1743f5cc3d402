"""The reconciler's scan never sticks on rows whose run Temporal does not know (never started,
or past retention): it moves on to the rest, a batch at a time."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.engine import Engine
from temporalio.client import Client

from api.reconciler import Reconciler
from api.temporal_link import TemporalLink
from core.db import as_utc, delete_job, get_job, insert_job
from core.models import Job, utcnow
from core.settings import Settings


async def test_rows_without_a_run_do_not_starve_the_scan(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    old = utcnow() - timedelta(days=30)  # older than anything else: scanned first
    ids = [f"ghost-{uuid.uuid4()}" for _ in range(30)]
    for job_id in ids:
        insert_job(
            engine,
            Job(
                job_id=job_id,
                workflow_name="quickstart",
                workflow_version="1.0.0",
                status="queued",
                created_at=old,
                updated_at=old,
            ),
        )
    reconciler = Reconciler(engine, TemporalLink(settings, temporal_client), batch=10)
    try:
        for _ in range(3):
            await reconciler.reconcile_once()
        touched = [get_job(engine, job_id) for job_id in ids]
        assert all(row is not None and as_utc(row.updated_at) > old for row in touched)
    finally:
        for job_id in ids:
            delete_job(engine, job_id)
