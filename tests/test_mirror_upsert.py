"""The mirror's upsert rules: what each writer may overwrite."""

from __future__ import annotations

import uuid

from sqlalchemy.engine import Engine

from core import db
from core.contracts import MirrorUpdate


def update(job_id: str, run_id: str, status: str, **extra: object) -> MirrorUpdate:
    return MirrorUpdate(
        job_id=job_id,
        run_id=run_id,
        workflow_name="quickstart",
        workflow_version="1.0.0",
        status=status,  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )


def test_an_observers_end_does_not_erase_the_interpreters_records(engine: Engine) -> None:
    job_id = f"mirror-{uuid.uuid4()}"
    records = {"steps": [{"id": "explain", "status": "cancelled", "attempts": 1}]}
    cancelled = {"type": "CANCELLED", "message": "job was cancelled"}
    try:
        assert db.upsert_job(engine, update(job_id, "r1", "running")) == "inserted"
        db.upsert_job(engine, update(job_id, "r1", "cancelled", error=cancelled, metadata=records))
        # The gateway then reads the end from Temporal: it knows the status, not the records.
        assert db.upsert_job(engine, update(job_id, "r1", "cancelled", error=cancelled)) == (
            "skipped"
        )
        row = db.get_job(engine, job_id)
        assert row is not None and row.job_metadata == records
    finally:
        db.delete_job(engine, job_id)


def test_a_reset_run_is_running_without_the_old_runs_error(engine: Engine) -> None:
    job_id = f"mirror-{uuid.uuid4()}"
    terminated = {"type": "TERMINATED", "message": "terminated by ops"}
    try:
        db.upsert_job(engine, update(job_id, "r1", "failed", error=terminated, metadata={}))
        # `temporal workflow reset` starts a new run of the same job id.
        assert db.upsert_job(engine, update(job_id, "r2", "running")) == "updated"
        row = db.get_job(engine, job_id)
        assert row is not None and row.status == "running"
        assert row.error is None and row.output is None and row.completed_at is None
    finally:
        db.delete_job(engine, job_id)
