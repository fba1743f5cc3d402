"""POST /jobs/{id}/rerun: a new job from a finished one, optionally resuming at a step.

The new run gets the original run's exact input, read back from Temporal history (the mirror
only keeps a redacted copy), including the definition snapshot, so a rerun runs what the
first run ran. With `from_step`, the outputs the first run recorded for the steps before it
are reused instead of re-running them (no second LLM bill for work already done).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from temporalio.service import RPCError, RPCStatusCode

from api.auth import Caller
from api.job_service import BadField, Conflict, NotFound, ServiceUnavailable, job_id_for
from api.schemas import JobAccepted
from api.temporal_link import TemporalLink, TemporalUnavailable
from core import db
from core.contracts import TERMINAL_STATUSES, InterpreterInput, RunOptions, WebhookTarget
from core.models import Job, JobSecret, utcnow
from core.secret_box import SecretBox
from core.settings import Settings
from core.temporal import start_job
from workflow_defs.schema import WorkflowDefinition
from workflow_defs.tree import exported_ids


async def original_input(temporal: TemporalLink, job_id: str) -> InterpreterInput:
    try:
        client = await temporal.client()
        history = await client.get_workflow_handle(job_id).fetch_history()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(
                f"job {job_id!r} has no history in Temporal (retention expired?)"
            ) from None
        raise ServiceUnavailable(f"Temporal is unavailable: {exc.status.name}") from None
    except TemporalUnavailable as exc:
        raise ServiceUnavailable(str(exc)) from None
    started = history.events[0].workflow_execution_started_event_attributes
    # The client's converter: with LLMFLOW_PAYLOAD_KEY the input is encrypted in history.
    [inp] = await client.data_converter.decode(list(started.input.payloads), [InterpreterInput])
    return inp  # type: ignore[no-any-return]


def reusable_outputs(
    definition: WorkflowDefinition, row: Job, from_step: str | None
) -> dict[str, object]:
    if from_step is None:
        return {}
    ids = [step.id for step in definition.steps]
    if from_step not in ids:
        raise BadField(
            "from_step", f"no step {from_step!r} in {definition.name}; steps: {', '.join(ids)}"
        )
    # Top-level records only: a block's inner steps are reused through their control step.
    records = {
        s["id"]: s
        for s in (row.job_metadata or {}).get("steps", [])
        if isinstance(s, dict) and s.get("parent") is None
    }
    reused: dict[str, object] = {}
    for step_id in ids[: ids.index(from_step)]:
        record = records.get(step_id)
        if record is not None and record.get("status") == "skipped":
            continue  # not reused: its `when` is evaluated again in the new run
        if record is None or record.get("status") != "completed":
            status = record.get("status") if record else "not run"
            raise BadField(
                "from_step",
                f"step {step_id!r} before {from_step!r} has no recorded output ({status}); "
                "rerun from an earlier step",
            )
        reused[step_id] = record.get("output")
    return reused


def reusable_exports(
    definition: WorkflowDefinition, row: Job, reused: dict[str, object]
) -> dict[str, object]:
    """The recorded outputs of the branch steps of each reused parallel (referable by id after
    it, so the new run must have them too)."""
    exported = {
        inner: step.id
        for step in definition.steps
        if step.id in reused
        for inner in exported_ids(step)
    }
    return {
        r["id"]: r.get("output")
        for r in (row.job_metadata or {}).get("steps", [])
        if isinstance(r, dict)
        and exported.get(str(r.get("id"))) == r.get("parent")
        and r.get("status") == "completed"
    }


def reusable_items(row: Job, from_step: str | None) -> dict[str, dict[str, object]]:
    """A failed foreach rerun from itself keeps the items that completed (a redrive)."""
    for record in (row.job_metadata or {}).get("steps", []):
        if (
            isinstance(record, dict)
            and record.get("parent") is None
            and record.get("id") == from_step
            and record.get("status") == "failed"
            and isinstance((record.get("summary") or {}).get("item_outputs"), dict)
        ):
            return {str(from_step): record["summary"]["item_outputs"]}
    return {}


async def carried_webhook(
    settings: Settings, engine: Engine, original: InterpreterInput, job_id: str, new_id: str
) -> tuple[WebhookTarget | None, JobSecret | None]:
    """The original's completion webhook for a job made from it (rerun, fork), with its own
    copy of the original's secret."""
    webhook = original.webhook
    if webhook is None or webhook.secret_ref != f"job:{job_id}":
        return webhook, None
    stored = await asyncio.to_thread(db.get_job_secret, engine, job_id)
    if not stored:
        # Deleted once the original's completion delivery ended. Signing with any other
        # secret would only fail the receiver's check for a day, so the new job sends none.
        return None, None
    sealed = SecretBox.from_settings(settings).reseal(stored)
    return (
        webhook.model_copy(update={"secret_ref": f"job:{new_id}"}),
        JobSecret(job_id=new_id, webhook_secret=sealed),
    )


def derived_row(row: Job, new_id: str, caller: Caller, webhook: bool, **fields: Any) -> Job:
    """The queued row of a job made from `row` (a rerun, a fork): its labels, the caller as
    owner; `fields` set or replace columns (a fork's input and links)."""
    now = utcnow()
    values: dict[str, Any] = {
        "job_id": new_id,
        "workflow_name": row.workflow_name,
        "workflow_version": row.workflow_version,
        "status": "queued",
        "input_data": row.input_data,
        "webhook_url": row.webhook_url if webhook else None,
        "owner": caller.name,
        "user_id": row.user_id,
        "username": row.username,
        "action": row.action,
        "priority": row.priority,
        "debug_mode": row.debug_mode,
        "created_at": now,
        "updated_at": now,
    }
    return Job(**{**values, **fields})


async def rerun_job(
    job_id: str,
    from_step: str | None,
    *,
    settings: Settings,
    engine: Engine,
    temporal: TemporalLink,
    caller: Caller,
    idempotency_key: str | None = None,
) -> tuple[JobAccepted, list[str], bool]:
    """(the new job, the steps it reuses, whether an earlier request with the same
    Idempotency-Key already made it)."""
    row = await asyncio.to_thread(db.get_job, engine, job_id)
    if row is None or not caller.owns(row.owner):
        raise NotFound(f"job {job_id!r} not found")
    new_id = str(uuid.uuid4())
    if idempotency_key:
        new_id = job_id_for(caller.name, f"rerun\n{job_id}\n{from_step}\n{idempotency_key}")
        earlier = await asyncio.to_thread(db.get_job, engine, new_id)
        if earlier is not None:
            return _accepted(earlier, db.as_utc(earlier.created_at) or utcnow()), [], True
    if row.status not in TERMINAL_STATUSES:
        raise Conflict(f"job {job_id!r} is still {row.status}; cancel it or wait for it to finish")
    original = await original_input(temporal, job_id)
    definition = WorkflowDefinition.model_validate(original.definition.definition)
    reuse = reusable_outputs(definition, row, from_step)
    exports = reusable_exports(definition, row, reuse)
    items = reusable_items(row, from_step)

    webhook, secret = await carried_webhook(settings, engine, original, job_id, new_id)
    new_row = derived_row(row, new_id, caller, webhook is not None)
    await asyncio.to_thread(db.insert_job, engine, new_row, secret)
    inp = InterpreterInput(
        job_id=new_id,
        definition=original.definition,
        input_data=original.input_data,
        webhook=webhook,
        options=RunOptions(
            reuse_steps=reuse,
            reuse_exported=exports,
            reuse_items=items,
            budget=original.options.budget,  # the first submit's lowered budget still holds
        ),
        labels=original.labels,
    )
    try:
        client = await temporal.client()
        await start_job(
            client,
            settings,
            inp,
            memo={"rerun_of": job_id, "from_step": from_step, "owner": caller.name},
        )
    except Exception as exc:
        await asyncio.to_thread(db.delete_job, engine, new_id)
        raise ServiceUnavailable(
            f"could not start the rerun in Temporal: {type(exc).__name__}"
        ) from exc
    redriven = [f"{step}[{i}]" for step, outputs in items.items() for i in outputs]
    return _accepted(row, new_row.created_at, new_id), [*reuse, *redriven], False


def _accepted(row: Job, created: datetime, job_id: str | None = None) -> JobAccepted:
    return JobAccepted(
        job_id=job_id or row.job_id,
        status="queued" if job_id else row.status,  # type: ignore[arg-type]
        workflow_name=row.workflow_name,
        workflow_version=row.workflow_version,
        created_at=created,
    )
