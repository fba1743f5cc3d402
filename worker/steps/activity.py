"""llm, external_api, http and webhook steps: one activity each; Temporal retries it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow

from worker.steps.base import Runner, StepAt, StepFailed, StepOutcome, deadline_context
from worker.steps.llm_budget import Admission, admit

with workflow.unsafe.imports_passed_through():
    from core.errors import ErrorContext, ErrorType
    from core.payload_limits import ACTIVITY_INPUT_LIMIT, describe, json_size
    from worker.limits import too_large
    from worker.step_inputs import build_activity_call


async def run(runner: Runner, step: Any, at: StepAt) -> StepOutcome:
    remaining = (runner.deadline - workflow.now()).total_seconds()
    if remaining <= 0:
        raise StepFailed(deadline_context(at.path), timed_out=True)
    call = build_activity_call(
        step,
        job_id=runner.inp.job_id,
        snapshot=runner.inp.definition,
        resolver=at.resolver,
        path=at.path,
    )
    admission = Admission(call.arg)
    if step.type == "llm":
        admission = admit(runner.budget_frames(at.path), step, at, call.arg)
        if admission.arg is None:
            return StepOutcome(output=None, warnings=admission.warnings)
        call.arg = admission.arg
    try:
        return await _call(runner, step, at, call, admission.warnings)
    finally:
        if admission.reservation is not None:
            admission.reservation.release()


async def _call(
    runner: Runner, step: Any, at: StepAt, call: Any, warnings: list[str]
) -> StepOutcome:
    remaining = (runner.deadline - workflow.now()).total_seconds()
    size = json_size(call.arg)
    if size > ACTIVITY_INPUT_LIMIT:
        raise StepFailed(
            too_large(at.path, f"the step's input is {describe(size)}", ACTIVITY_INPUT_LIMIT)
        )
    try:
        result = await workflow.execute_activity(
            call.name,
            call.arg,
            result_type=call.result_type,
            start_to_close_timeout=call.start_to_close,
            schedule_to_close_timeout=timedelta(seconds=remaining),
            heartbeat_timeout=call.heartbeat_timeout,
            retry_policy=call.retry_policy,
            summary=f"{at.path}: {step.display_name or step.type}",
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        context = ErrorContext.from_failure(exc, step_id=at.path)
        if context.type == ErrorType.CANCELLED:
            # The activity was cancelled because the job (or its branch) was.
            raise asyncio.CancelledError() from None
        if context.type == ErrorType.TIMEOUT and workflow.now() >= runner.deadline:
            raise StepFailed(deadline_context(at.path), timed_out=True) from None
        raise StepFailed(context) from None
    usage = getattr(result, "usage", None)
    return StepOutcome(
        output=result.model_dump(mode="json", exclude={"attempt", "warnings"}),
        attempts=getattr(result, "attempt", 1),
        tokens=usage.total_tokens if usage is not None else 0,
        cost_usd=getattr(result, "cost_usd", 0.0) or 0.0,
        warnings=warnings + list(getattr(result, "warnings", None) or []),
        content=getattr(result, "content", None),
    )
