"""What the interpreter does around the steps: mirror writes, the completion webhook, alerts.

Workflow code (deterministic): each helper only schedules activities or child workflows.
Split out of interpreter.py so the step loop reads on its own; command order is unchanged
(the committed histories replay).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from core.contracts import (
        MIRROR_JOB,
        MIRROR_WORKFLOW,
        RAISE_ALERT,
        WEBHOOK_DELIVERY_WORKFLOW,
        AlertInput,
        InterpreterInput,
        JobResult,
        MirrorUpdate,
        StepRecord,
        Waiting,
        WebhookDeliveryInput,
        llm_calls,
    )
    from core.errors import ErrorContext
    from core.payload_limits import CALLBACK_LIMIT, describe, json_size
    from workflow_defs.schema import WorkflowDefinition

# How a failed mirror write reaches the workflow: an activity's failure as ActivityError, a
# local activity's as the ApplicationError it raised (or a timeout).
MIRROR_FAILED = (ActivityError, ApplicationError, TimeoutError)

# The mirror is retried until the database is back: losing a job's result is not an option.
MIRROR_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
)


# About 4 s of attempts: a brief blip is ridden out in the run, a real outage goes to the
# MirrorWorkflow instead of holding the job's workflow task open.
LOCAL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=2),
    maximum_attempts=4,
)


def start_mirror(
    inp: InterpreterInput,
    defn: WorkflowDefinition,
    status: str,
    *,
    started_at: str | None = None,
    completed_at: str | None = None,
    result: JobResult | None = None,
    waiting_since: str | None = None,
    waiting: bool | None = None,
) -> Any:
    if not inp.options.mirror:
        return None
    update = MirrorUpdate(
        job_id=inp.job_id,
        run_id=workflow.info().run_id,
        workflow_name=defn.name,
        workflow_version=defn.version,
        status=status,  # type: ignore[arg-type]
        started_at=started_at,
        completed_at=completed_at,
        output=result.output if result else None,
        error=result.error if result else None,
        metadata=result.metadata.model_dump(mode="json") if result else None,
        waiting=waiting,
        waiting_since=waiting_since,
        owner=workflow.memo_value("owner", None, type_hint=str),
        parent_job_id=inp.parent_job_id,
    )
    options: dict[str, Any] = {
        "start_to_close_timeout": timedelta(seconds=30),
        "schedule_to_close_timeout": timedelta(seconds=inp.options.mirror_budget_seconds),
        "retry_policy": MIRROR_RETRY,
        "summary": f"mirror: {status}",
    }
    # A local activity: one marker in the run's history, and no round trip through the
    # server's task queues (the server's CPU per job is what bounds throughput). It retries a
    # few times only: a database that stays down hands the write to a detached MirrorWorkflow
    # (finish_mirror), which retries until it is back. Runs recorded before this took the
    # regular activity path and still replay it.
    if workflow.patched("mirror-local-activity"):
        options.update(start_to_close_timeout=timedelta(seconds=10), retry_policy=LOCAL_RETRY)
        handle = workflow.start_local_activity(MIRROR_JOB, update, **options)
    else:
        handle = workflow.start_activity(MIRROR_JOB, update, **options)
    return handle, update


async def finish_mirror(
    inp: InterpreterInput, status: str, handle: Any, update: MirrorUpdate
) -> None:
    try:
        await handle
    except MIRROR_FAILED:
        # The database stayed down past the budget: finish the job anyway and leave a
        # detached workflow retrying the write until the database is back.
        await workflow.start_child_workflow(
            MIRROR_WORKFLOW,
            update,
            id=f"{inp.job_id}:mirror:{workflow.info().run_id}",
            parent_close_policy=ParentClosePolicy.ABANDON,
            static_summary=f"mirror {status} (database was unavailable)",
        )


def _timestamp() -> str:
    return workflow.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def start_completion_webhook(
    inp: InterpreterInput, defn: WorkflowDefinition, result: JobResult
) -> None:
    assert inp.webhook is not None
    completed = result.status == "completed"
    event = "workflow.completed" if completed else "workflow.failed"
    meta = result.metadata
    labels = inp.labels
    calls = llm_calls(meta.steps)
    payload: dict[str, Any] = {
        "event": event,
        "job_id": inp.job_id,
        "status": result.status,
        "workflow_name": defn.name,
        "workflow_version": defn.version,
        "user_id": labels.user_id,
        "metadata": {
            "duration_ms": meta.duration_ms,
            "total_tokens": meta.total_tokens,
            "total_cost_usd": meta.total_cost_usd,
            "user_id": labels.user_id,
            "steps": [
                {
                    "id": r.id,
                    "status": r.status,
                    "attempts": r.attempts,
                    "duration_ms": r.duration_ms,
                }
                for r in meta.steps
            ],
        },
        # The earlier service's shape, which its clients read.
        "result": {
            "output": result.output if completed else None,
            "metadata": {
                **labels.model_dump(exclude={"debug_mode"}),
                "duration_ms": meta.duration_ms,
                "total_tokens": meta.total_tokens,
                "total_cost_usd": meta.total_cost_usd,
                "llm_calls": calls,
            },
            "steps_executed": [r.id for r in meta.steps if r.status in ("completed", "failed")],
        },
        "cost_data": {
            "total_tokens": meta.total_tokens,
            "cost_usd": meta.total_cost_usd,
            "llm_calls": calls,
        },
        "duration_ms": meta.duration_ms,
        "timestamp": _timestamp(),
    }
    if completed:
        payload["output"] = result.output
        size = json_size(payload)
        if size > CALLBACK_LIMIT:
            # The output rides twice; past the limit the receiver fetches it instead.
            stub = {
                "omitted": f"the output ({describe(size)} with its copy) is too large for a "
                "callback; GET the job to read it",
                "job_url": f"/api/v1/jobs/{inp.job_id}",
            }
            payload["output"] = payload["result"]["output"] = stub
    else:
        payload["error"] = result.error
        payload["error_message"] = (result.error or {}).get("message") or result.status
    run_id = workflow.info().run_id
    # One delivery per run: a reset run reports its own outcome; retries of this delivery
    # (and worker crashes) keep the same id, which receivers dedupe on.
    await _deliver(inp, event, payload, child_id=f"{inp.job_id}:webhook:{run_id}")


async def start_llm_step_webhook(
    inp: InterpreterInput, defn: WorkflowDefinition, record: StepRecord
) -> None:
    """debug_mode: an `llm.step.completed` callback as each LLM step finishes."""
    if inp.webhook is None:
        return
    output = record.output if isinstance(record.output, dict) else {}
    usage = output.get("usage") or {}
    payload = {
        "event": "llm.step.completed",
        "job_id": inp.job_id,
        "workflow_name": defn.name,
        "user_id": inp.labels.user_id,
        "step_id": record.id,
        "result": output.get("data") if output.get("data") is not None else output.get("content"),
        "tokens": {
            "input": usage.get("input_tokens", 0),
            "output": usage.get("output_tokens", 0),
            "total": record.tokens,
        },
        "cost_usd": record.cost_usd,
        "duration_ms": record.duration_ms,
        "model": output.get("model"),
        "timestamp": _timestamp(),
    }
    child_id = f"{inp.job_id}:webhook:{workflow.info().run_id}:{record.id}"
    await _deliver(inp, "llm.step.completed", payload, child_id=child_id)


async def note_waiting(
    inp: InterpreterInput, defn: WorkflowDefinition, wait: Waiting, *, waiting: bool
) -> None:
    """Tell the mirror (GET /jobs?waiting=true) and, when it starts, the job's webhook."""
    mirror = start_mirror(inp, defn, "running", waiting=waiting, waiting_since=wait.since)
    if waiting and inp.webhook is not None:
        payload = {
            "event": "workflow.waiting",
            "job_id": inp.job_id,
            "workflow_name": defn.name,
            "user_id": inp.labels.user_id,
            "waiting": wait.model_dump(mode="json"),
            "respond": (
                f"/api/v1/jobs/{inp.job_id}/approvals/{wait.path}"
                if wait.kind == "approval"
                else f"/api/v1/jobs/{inp.job_id}/events/{wait.event}"
            ),
            "timestamp": _timestamp(),
        }
        child_id = f"{inp.job_id}:webhook:{workflow.info().run_id}:waiting:{wait.path}"
        await _deliver(inp, "workflow.waiting", payload, child_id=child_id)
    if mirror is not None:
        try:
            await mirror[0]
        except MIRROR_FAILED:
            pass  # only the list filter lags; the wait itself goes on


async def _deliver(
    inp: InterpreterInput, event: str, payload: dict[str, Any], *, child_id: str
) -> None:
    assert inp.webhook is not None
    await workflow.start_child_workflow(
        WEBHOOK_DELIVERY_WORKFLOW,
        WebhookDeliveryInput(
            job_id=inp.job_id,
            url=inp.webhook.url,
            secret_ref=inp.webhook.secret_ref,
            event=event,
            delivery_id=f"whd_{workflow.uuid4().hex}",
            payload=payload,
        ),
        id=child_id,
        parent_close_policy=ParentClosePolicy.ABANDON,
        static_summary=f"{event} → webhook",
    )


async def alert_failure(
    inp: InterpreterInput, defn: WorkflowDefinition, status: str, error: ErrorContext
) -> None:
    # A broken deployment (config/system) pages someone; a bad input or upstream refusal is
    # recorded for the dashboard only.
    serious = error.category in ("CONFIG_ERROR", "SYSTEM_ERROR")
    try:
        await _raise_alert(inp, defn, status, error, serious)
    except MIRROR_FAILED:
        pass  # the job's own outcome matters more than its alert; the mirror has the error


async def _raise_alert(
    inp: InterpreterInput,
    defn: WorkflowDefinition,
    status: str,
    error: ErrorContext,
    serious: bool,
) -> None:
    await workflow.execute_activity(
        RAISE_ALERT,
        AlertInput(
            level="ERROR" if serious else "WARNING",
            source="job",
            message=f"{defn.name} {defn.version} job {inp.job_id} {status} at step "
            f"{error.step_id or '-'}: {error.message}",
            job_id=inp.job_id,
            details={"error": error.model_dump(mode="json")},
        ),
        start_to_close_timeout=timedelta(seconds=30),
        schedule_to_close_timeout=timedelta(seconds=inp.options.mirror_budget_seconds),
        retry_policy=MIRROR_RETRY,
        summary="alert: job failed",
    )
