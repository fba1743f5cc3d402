"""Keeps the mirror in line with Temporal for runs changed outside the interpreter.

Operators terminate, cancel, reset and time out runs with the `temporal` CLI or the Web UI.
The interpreter mirrors what it sees itself (including cancellation and reset runs, which
re-execute its mirror activity); this loop covers the rest:

1. rows still `queued`/`running` whose run has closed in Temporal (terminated, timed out,
   failed before its final mirror) get the closed status, and the result when there is one;
2. rows whose job Temporal shows running under a different run (reset to a later point) go
   back to `running` with the new run id;
3. runs whose workflow task keeps failing (a bug, or a payload Temporal refuses) make no
   progress while looking `running`: they are collected in `stuck` (shown by /metrics and
   /health/detailed) and raise one ERROR alert each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from sqlalchemy.engine import Engine
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from api.temporal_link import TemporalLink
from core import db
from core.contracts import INTERPRETER_WORKFLOW, TERMINAL_STATUSES, JobResult, MirrorUpdate
from core.errors import ErrorContext, ErrorType
from core.models import Alert, Job, utcnow

log = logging.getLogger("llmflow.reconciler")

CLOSED_STATUS = {
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "failed",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
}


class Reconciler:
    def __init__(
        self,
        engine: Engine,
        temporal: TemporalLink,
        *,
        interval: float = 2.0,
        batch: int = 100,
        reset_window: timedelta = timedelta(minutes=10),
        revisit_after: float = 10.0,
        reset_every: float = 10.0,
        auto_migrate: bool = True,
    ) -> None:
        self._engine = engine
        self._auto_migrate = auto_migrate
        self._temporal = temporal
        self._interval = interval
        self._batch = batch
        self._reset_window = reset_window
        # A row the interpreter wrote less than `revisit_after` seconds ago is being looked
        # after by its run; describing it again every round only loads the server (a running
        # job's GET reconciles on read anyway). Runs changed from outside are caught within
        # `revisit_after` + `interval`.
        self._revisit_after = max(interval, revisit_after)
        self._reset_every = reset_every
        self._next_reset_scan = 0.0
        self._tables_ready = False
        # job id → attempts of its failing workflow task, as last seen.
        self.stuck: dict[str, int] = {}

    async def run_forever(self) -> None:
        while True:
            try:
                await self.reconcile_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Temporal or the DB down: try again next round
                log.warning("reconcile round failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self._interval)

    async def reconcile_once(self) -> int:
        """One pass; returns how many rows were changed."""
        if not self._tables_ready:
            # The gateway may have started while the database was down.
            await asyncio.to_thread(db.create_tables, self._engine, auto_migrate=self._auto_migrate)
            self._tables_ready = True
        changed = 0
        cutoff = utcnow() - timedelta(seconds=self._revisit_after)
        rows = await asyncio.to_thread(
            db.unfinished_jobs, self._engine, updated_before=cutoff, limit=self._batch
        )
        for row in rows:
            changed += await reconcile_row(self._engine, self._temporal, row, stuck=self.stuck)
        now = time.monotonic()
        if now >= self._next_reset_scan:
            self._next_reset_scan = now + self._reset_every
            changed += await self._adopt_reset_runs()
        return changed

    async def _adopt_reset_runs(self) -> int:
        client = await self._temporal.client()
        since = (utcnow() - self._reset_window).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = f'WorkflowType = "{INTERPRETER_WORKFLOW}" AND ExecutionStatus = "Running" AND StartTime > "{since}"'
        running = [wf async for wf in client.list_workflows(query, limit=self._batch)]
        if not running:
            return 0
        # One read for the page, not one per run.
        rows = await asyncio.to_thread(db.get_jobs, self._engine, [wf.id for wf in running])
        changed = 0
        for wf in running:
            row = rows.get(wf.id)
            if row is None or row.status not in TERMINAL_STATUSES or row.run_id == wf.run_id:
                continue
            await _write(
                self._engine, row, wf.run_id, "running", started_at=wf.start_time.isoformat()
            )
            changed += 1
        return changed


# A workflow task is retried right away once; a second failure means it will keep failing.
STUCK_AFTER_ATTEMPTS = 2


def failing_task_attempts(desc: object) -> int | None:
    """Attempts of the run's pending workflow task when it has failed before, else None."""
    raw = getattr(desc, "raw_description", None)
    if raw is None or not raw.HasField("pending_workflow_task"):
        return None
    attempt = int(raw.pending_workflow_task.attempt)
    return attempt if attempt >= STUCK_AFTER_ATTEMPTS else None


async def reconcile_row(
    engine: Engine, temporal: TemporalLink, row: Job, *, stuck: dict[str, int] | None = None
) -> int:
    """Bring one unfinished row in line with its run in Temporal; returns 1 if it changed."""
    client = await temporal.client()
    handle = client.get_workflow_handle(row.job_id, result_type=JobResult)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        # Submitted but never started, or retention expired: nothing to mirror. Touch it so the
        # scan (oldest first, a batch at a time) moves on instead of revisiting it forever.
        await asyncio.to_thread(db.touch_job, engine, row.job_id)
        return 0
    status = CLOSED_STATUS.get(desc.status) if desc.status else None
    if stuck is not None:
        await _note_stuck(engine, row, desc, stuck, running=status is None)
    if status is None:
        if desc.run_id != row.run_id and row.status == "running" and row.run_id is not None:
            await _write(
                engine, row, desc.run_id, "running", started_at=desc.start_time.isoformat()
            )
            return 1
        await asyncio.to_thread(db.touch_job, engine, row.job_id)
        return 0
    update = await _closed_update(row, handle, desc, status)
    await asyncio.to_thread(db.upsert_job, engine, update)
    log.info("job %s: mirror reconciled to %s (run %s)", row.job_id, update.status, desc.run_id)
    return 1


async def _note_stuck(
    engine: Engine, row: Job, desc: object, stuck: dict[str, int], *, running: bool
) -> None:
    attempts = failing_task_attempts(desc) if running else None
    if attempts is None:
        stuck.pop(row.job_id, None)
        return
    if row.job_id not in stuck:
        message = (
            f"job {row.job_id} ({row.workflow_name}) is not progressing: its workflow task has "
            f"failed {attempts} times; see the run in the Temporal Web UI (worker logs name the "
            "cause), then fix and reset it, or terminate it"
        )
        log.error(message)
        alert = Alert(level="ERROR", source="temporal", message=message, job_id=row.job_id)
        await asyncio.to_thread(db.insert_alert, engine, alert)
    stuck[row.job_id] = attempts


async def _closed_update(row: Job, handle, desc, status: str) -> MirrorUpdate:  # type: ignore[no-untyped-def]
    completed_at = desc.close_time.isoformat() if desc.close_time else None
    base = {
        "job_id": row.job_id,
        "run_id": desc.run_id,
        "workflow_name": row.workflow_name,
        "workflow_version": row.workflow_version,
        "started_at": desc.start_time.isoformat(),
        "completed_at": completed_at,
    }
    if desc.status == WorkflowExecutionStatus.COMPLETED:
        result: JobResult = await handle.result()
        return MirrorUpdate(
            **base,
            status=result.status,
            output=result.output,
            error=result.error,
            metadata=result.metadata.model_dump(mode="json"),
        )
    if desc.status == WorkflowExecutionStatus.TERMINATED:
        reason = await _failure_message(handle)
        error = ErrorContext.of(
            ErrorType.TERMINATED,
            f"terminated outside llmflow: {reason}" if reason else "terminated outside llmflow",
            retryable=False,
            details={"suggestions": ["rerun the job, or reset the run with the temporal CLI"]},
        )
    elif desc.status == WorkflowExecutionStatus.TIMED_OUT:
        error = ErrorContext.of(
            ErrorType.WORKFLOW_TIMEOUT,
            "the run hit its Temporal execution timeout",
            retryable=False,
        )
    elif desc.status == WorkflowExecutionStatus.CANCELED:
        error = ErrorContext.of(ErrorType.CANCELLED, "job was cancelled", retryable=False)
    else:
        try:
            await handle.result()
            error = ErrorContext.of(ErrorType.INTERNAL_ERROR, "run failed", retryable=False)
        except WorkflowFailureError as exc:
            error = ErrorContext.from_failure(exc.cause)
    return MirrorUpdate(
        **base, status=status, error=error.model_dump(mode="json"), metadata=row.job_metadata
    )  # type: ignore[arg-type]


async def _write(
    engine: Engine, row: Job, run_id: str, status: str, *, started_at: str | None
) -> None:
    update = MirrorUpdate(
        job_id=row.job_id,
        run_id=run_id,
        workflow_name=row.workflow_name,
        workflow_version=row.workflow_version,
        status=status,  # type: ignore[arg-type]
        started_at=started_at,
    )
    await asyncio.to_thread(db.upsert_job, engine, update)
    log.info("job %s: mirror follows run %s (%s)", row.job_id, run_id, status)


async def _failure_message(handle) -> str | None:  # type: ignore[no-untyped-def]
    try:
        await handle.result()
    except WorkflowFailureError as exc:
        cause = exc.cause
        return getattr(cause, "message", None) or str(cause)
    except Exception:
        return None
    return None
