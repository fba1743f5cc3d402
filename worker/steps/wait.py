"""wait: a durable timer, for `seconds` or `until` an ISO timestamp; bounded by the job's
deadline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio import workflow

from worker.steps.base import Runner, StepAt, StepFailed, StepOutcome, deadline_context, failure

with workflow.unsafe.imports_passed_through():
    from core.errors import ErrorType


async def run(runner: Runner, step: Any, at: StepAt) -> StepOutcome:
    cfg = step.config
    now = workflow.now()
    if cfg.seconds is not None:
        value = at.resolver.resolve(cfg.seconds)
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise failure(
                ErrorType.VALIDATION_ERROR, f"seconds must be a number (got {value!r})", at.path
            ) from None
    else:
        value = at.resolver.resolve(cfg.until)
        try:
            until = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise failure(
                ErrorType.VALIDATION_ERROR,
                f"until must be an ISO 8601 timestamp (got {value!r})",
                at.path,
            ) from None
        if until.tzinfo is None:
            raise failure(
                ErrorType.VALIDATION_ERROR, f"until needs a UTC offset (got {value!r})", at.path
            )
        seconds = (until - now).total_seconds()
    seconds = max(0.0, seconds)
    remaining = (runner.deadline - now).total_seconds()
    if seconds > remaining:
        await workflow.sleep(max(0.0, remaining))
        raise StepFailed(deadline_context(at.path), timed_out=True)
    if seconds > 0:
        await workflow.sleep(seconds)
    return StepOutcome(output={"waited_seconds": seconds})
