"""sub_workflow: another definition run as a child job (its own job id, mirror row and history,
a child of this run in the Web UI). Its definition was frozen into this run's snapshot when
the job was submitted, so a replay never reads files. Cancelling the job cancels the child."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError
from temporalio.workflow import ParentClosePolicy

from worker.budgets import Ledger
from worker.steps.base import Runner, StepAt, StepFailed, StepOutcome, failure

with workflow.unsafe.imports_passed_through():
    from core.contracts import INTERPRETER_WORKFLOW, InterpreterInput, JobResult, RunOptions
    from core.errors import ErrorContext, ErrorType
    from core.search_attributes import job_search_attributes
    from worker.step_inputs import definition_of
    from workflow_defs.inputs import InputError, validate_input
    from workflow_defs.schema import sub_workflow_key


async def run(runner: Runner, step: Any, at: StepAt) -> StepOutcome:
    cfg = step.config
    snapshot = runner.inp.definition.children.get(sub_workflow_key(cfg.workflow, cfg.version))
    if snapshot is None:
        raise failure(
            ErrorType.DEFINITION_ERROR,
            f"workflow {cfg.workflow!r} {cfg.version or '(latest)'} was not frozen into this "
            "job when it was submitted",
            at.path,
        )
    try:
        input_data = validate_input(definition_of(snapshot), at.resolver.resolve(cfg.input) or {})
    except InputError as exc:
        raise failure(
            ErrorType.VALIDATION_ERROR, f"input of {cfg.workflow}: {exc}", at.path
        ) from None
    # Derived from the parent and the step's path: a replay or a retry finds the same child.
    child_id = f"{runner.inp.job_id}.{at.path}"
    # A child the step waits for may spend what the budgets above it have left (as its
    # submit budget), reserved here until it ends; its spend then counts through its totals.
    frames = runner.budget_frames(at.path) if cfg.wait else []
    share = Ledger.share(frames, 1)
    child = InterpreterInput(
        job_id=child_id,
        definition=snapshot,
        input_data=input_data,
        labels=runner.inp.labels,
        parent_job_id=runner.inp.job_id,
        options=RunOptions(search_attributes=runner.inp.options.search_attributes, budget=share),
    )
    options: dict[str, Any] = {
        "id": child_id,
        "memo": {"owner": workflow.memo_value("owner", None), "parent_job_id": runner.inp.job_id},
        "static_summary": f"{at.path}: {snapshot.name} {snapshot.version}",
    }
    if child.options.search_attributes:
        options["search_attributes"] = job_search_attributes(snapshot.name, snapshot.version)
    if not cfg.wait:
        await workflow.start_child_workflow(
            INTERPRETER_WORKFLOW, child, parent_close_policy=ParentClosePolicy.ABANDON, **options
        )
        return StepOutcome(output={"job_id": child_id}, summary={"job_id": child_id})
    reservation = (
        Ledger.reserve(frames, share.max_tokens or 0, share.max_cost_usd or 0.0)
        if share is not None
        else None
    )
    try:
        result = await workflow.execute_child_workflow(
            INTERPRETER_WORKFLOW, child, result_type=JobResult, **options
        )
    except ChildWorkflowError as exc:
        context = ErrorContext.from_failure(exc)
        if context.type == ErrorType.CANCELLED:
            raise asyncio.CancelledError() from None
        message = f"sub_workflow {snapshot.name} (job {child_id}) failed: {context.message}"
        raise StepFailed(
            context.model_copy(update={"message": message, "step_id": at.path})
        ) from None
    finally:
        if reservation is not None:
            reservation.release()
    meta = result.metadata
    return StepOutcome(
        output=result.output,
        tokens=meta.total_tokens,
        cost_usd=meta.total_cost_usd,
        summary={"job_id": child_id, "workflow": snapshot.name, "version": snapshot.version},
    )
