"""What the jobs endpoints do: submit a job, and read it back from the mirror and Temporal."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api.schemas import JobAccepted, JobCreate, JobView, TemporalRef
from api.temporal_link import TemporalLink
from core import db
from core.contracts import TERMINAL_STATUSES, InterpreterInput, JobStatus, Progress
from core.models import Job, utcnow
from core.redaction import redact
from core.settings import Settings
from core.temporal import start_job
from workflow_defs.catalog import Catalog
from workflow_defs.inputs import validate_input

log = logging.getLogger(__name__)

TEMPORAL_STATUS: dict[WorkflowExecutionStatus, JobStatus] = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "failed",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "running",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
}


class NotFound(LookupError):
    pass


class ServiceUnavailable(RuntimeError):
    pass


async def submit_job(
    body: JobCreate,
    *,
    settings: Settings,
    engine: Engine,
    catalog: Catalog,
    temporal: TemporalLink,
) -> JobAccepted:
    loaded = catalog.definitions.get(body.workflow_name, body.workflow_version)
    if loaded is None:
        known = catalog.definitions.versions(body.workflow_name)
        hint = f"; versions: {', '.join(known)}" if known else ""
        raise NotFound(
            f"workflow {body.workflow_name!r} version {body.workflow_version or 'latest'} not found{hint}"
        )
    input_data = validate_input(loaded.definition, body.input_data)  # InputError → 422
    job_id = str(uuid.uuid4())
    now = utcnow()
    row = Job(
        job_id=job_id,
        workflow_name=loaded.name,
        workflow_version=loaded.version,
        status="queued",
        input_data=redact(input_data, truncate=False),
        webhook_url=body.webhook_url,
        created_at=now,
        updated_at=now,
    )
    inserted = True
    try:
        await asyncio.to_thread(db.insert_job, engine, row)
    except SQLAlchemyError as exc:
        # The interpreter's mirror activity creates the row once the database is back;
        # the job itself is safe in Temporal, so accepting it is still correct.
        inserted = False
        log.warning("job %s: mirror insert failed, continuing: %s", job_id, type(exc).__name__)
    inp = InterpreterInput(job_id=job_id, definition=loaded.snapshot(), input_data=input_data)
    try:
        client = await temporal.client()
        await start_job(client, settings, inp)
    except Exception as exc:
        if inserted:
            await asyncio.to_thread(_forget, engine, job_id)
        raise ServiceUnavailable(
            f"could not start the job in Temporal: {type(exc).__name__}"
        ) from exc
    return JobAccepted(
        job_id=job_id,
        status="queued",
        workflow_name=loaded.name,
        workflow_version=loaded.version,
        created_at=now,
    )


def _forget(engine: Engine, job_id: str) -> None:
    from sqlmodel import Session

    try:
        with Session(engine) as session:
            row = session.get(Job, job_id)
            if row is not None:
                session.delete(row)
                session.commit()
    except SQLAlchemyError:
        log.warning("job %s: could not remove the row of a job that never started", job_id)


def _ui_url(settings: Settings, job_id: str, run_id: str | None) -> str:
    base = (
        f"{settings.temporal_ui_base()}/namespaces/{settings.temporal_namespace}/workflows/{job_id}"
    )
    return f"{base}/{run_id}/history" if run_id else base


async def get_job_view(
    job_id: str, *, settings: Settings, engine: Engine, temporal: TemporalLink
) -> JobView:
    row: Job | None
    try:
        row = await asyncio.to_thread(db.get_job, engine, job_id)
    except SQLAlchemyError:
        row = None  # fall back to Temporal alone while the database is down
    if row is not None and row.status in TERMINAL_STATUSES:
        return _view_from_row(row, settings, progress=None)
    live = await _live_state(job_id, temporal)
    if row is None and live is None:
        raise NotFound(f"job {job_id!r} not found")
    if row is None:
        assert live is not None
        return JobView(
            job_id=job_id,
            status=live["status"],
            workflow_name=live["workflow_name"],
            workflow_version=live["workflow_version"],
            progress=live.get("progress"),
            created_at=live.get("start_time"),
            temporal=TemporalRef(
                workflow_id=job_id,
                run_id=live["run_id"],
                ui_url=_ui_url(settings, job_id, live["run_id"]),
            ),
        )
    view = _view_from_row(row, settings, progress=live.get("progress") if live else None)
    if live is not None:
        # The mirror lags Temporal by one activity; show the fresher status.
        if row.status == "queued" or live["status"] in TERMINAL_STATUSES:
            view.status = live["status"]
        view.temporal.run_id = live["run_id"]
    return view


def _view_from_row(row: Job, settings: Settings, *, progress: dict[str, Any] | None) -> JobView:
    return JobView(
        job_id=row.job_id,
        status=row.status,  # type: ignore[arg-type]
        workflow_name=row.workflow_name,
        workflow_version=row.workflow_version,
        output=row.output,
        error=row.error,
        metadata=row.job_metadata,
        progress=progress,
        created_at=db.as_utc(row.created_at),
        started_at=db.as_utc(row.started_at),
        completed_at=db.as_utc(row.completed_at),
        temporal=TemporalRef(
            workflow_id=row.job_id,
            run_id=row.run_id,
            ui_url=_ui_url(settings, row.job_id, row.run_id),
        ),
    )


async def _live_state(job_id: str, temporal: TemporalLink) -> dict[str, Any] | None:
    try:
        client = await temporal.client()
        handle = client.get_workflow_handle(job_id)
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        log.warning("describe %s failed: %s", job_id, exc)
        return None
    except Exception as exc:
        log.warning("Temporal unavailable while reading %s: %s", job_id, type(exc).__name__)
        return None
    status = TEMPORAL_STATUS.get(desc.status, "running") if desc.status else "running"
    sa = desc.typed_search_attributes
    state: dict[str, Any] = {
        "status": status,
        "run_id": desc.run_id,
        "start_time": desc.start_time,
        "workflow_name": _sa(sa, "WorkflowName") or "",
        "workflow_version": _sa(sa, "WorkflowVersion") or "",
    }
    if status == "running":
        # The interpreter moves JobStatus from "queued" to "running" in its first task, so a
        # run no worker has picked up yet still reads as queued (and isn't queried).
        if _sa(sa, "JobStatus") == "queued":
            state["status"] = "queued"
            return state
        try:
            progress = await handle.query(
                "progress", result_type=Progress, rpc_timeout=timedelta(seconds=2)
            )
            state["progress"] = progress.model_dump()
        except Exception:
            state["progress"] = None
    return state


def _sa(attrs: Any, name: str) -> str | None:
    for pair in attrs:
        if pair.key.name == name:
            return str(pair.value)
    return None
