"""Whether an llm call may be made under the budgets above it, and with which model.

Workflow code: pure. Each candidate (the step's model, then its fallbacks) gets a worst-case
estimate (activities/llm/estimate.py); a candidate that could cross any budget is not called.
The primary failing the check: `on_budget` says what happens (fail with BUDGET_EXCEEDED,
call the fallbacks that fit cheapest first, or skip the step). A fallback failing it is dropped
from the call, with a warning. What is admitted is reserved on every budget until the call ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow

from worker.budgets import Frame, Ledger, Reservation
from worker.steps.base import StepAt, StepFailed

with workflow.unsafe.imports_passed_through():
    from activities.llm.estimate import DEFAULT_MAX_TOKENS, CallEstimate, estimate_call
    from activities.llm.models import LlmCallInput, LlmFallback
    from core.errors import ErrorContext, ErrorType


@dataclass
class Admission:
    arg: LlmCallInput | None  # None: the step is skipped (on_budget: skip)
    reservation: Reservation | None = None
    warnings: list[str] = field(default_factory=list)


def admit(frames: list[Frame], step: Any, at: StepAt, arg: LlmCallInput) -> Admission:
    """`frames`: the budgets above the step (its own budget is added here)."""
    if step.budget is not None:
        frames = [Frame.of(step.budget, f"steps.{step.id}.budget"), *frames]
    if not frames:
        return Admission(arg)
    if arg.max_tokens is None:
        # The estimate needs a bound on the reply; sending it makes the bound hold.
        arg = arg.model_copy(update={"max_tokens": DEFAULT_MAX_TOKENS})
    primary = _estimate(step, arg, arg.provider, arg.model)
    fallbacks = [_estimate(step, arg, f.provider, f.model) for f in arg.fallbacks]
    problem = _first_crossing(frames, primary)
    fitting = [f for f in fallbacks if _first_crossing(frames, f) is None]
    warnings = [
        f"fallback {_label(f)} left out: it could cross the budget"
        for f in fallbacks
        if f not in fitting
    ]
    if problem is None:
        chosen = [primary, *fitting]
    elif step.on_budget == "fallback" and fitting:
        # Cheapest first; equal estimates keep the order the step gives them in.
        chosen = sorted(fitting, key=lambda f: f.cost_usd or 0.0)
        warnings = [f"{_label(primary)} could cross {problem['budget']}: using {_label(chosen[0])}"]
    elif step.on_budget == "skip":
        message = f"skipped: {_describe(primary, problem)}"
        return Admission(None, warnings=[message])
    else:
        raise _exceeded(at.path, primary, problem, fallback=step.on_budget == "fallback")
    arg = arg.model_copy(
        update={
            "provider": chosen[0].provider,
            "model": chosen[0].model,
            "fallbacks": [
                LlmFallback(provider=c.provider or "", model=c.model) for c in chosen[1:]
            ],
        }
    )
    # Only one candidate's reply is paid for; reserve the dearest that might be the one.
    tokens = max(c.tokens for c in chosen)
    cost = max(c.cost_usd or 0.0 for c in chosen)
    return Admission(arg, Ledger.reserve(frames, tokens, cost), warnings)


def _estimate(step: Any, arg: LlmCallInput, provider: str | None, model: str) -> CallEstimate:
    assert arg.max_tokens is not None
    return estimate_call(
        provider=provider,
        model=model,
        prompt=arg.prompt,
        system_prompt=arg.system_prompt,
        max_tokens=arg.max_tokens,
        response_format=arg.response_format,
        max_repairs=arg.max_repairs,
        max_cost_usd_per_call=step.max_cost_usd_per_call,
    )


def _first_crossing(frames: list[Frame], estimate: CallEstimate) -> dict[str, Any] | None:
    for frame in frames:
        problem = frame.crossing(estimate)
        if problem is not None:
            return problem
    return None


def _label(estimate: CallEstimate) -> str:
    return f"{estimate.provider}/{estimate.model}" if estimate.provider else estimate.model


def _describe(estimate: CallEstimate, problem: dict[str, Any]) -> str:
    if problem.get("unknown_price"):
        return (
            f"model {_label(estimate)} has no price in the price table, so a call under "
            f"{problem['budget']} ({problem['limit']}) has unknown cost; set the step's "
            "max_cost_usd_per_call to bound it"
        )
    in_flight = f" (+{_num(problem['in_flight'])} in flight)" if problem["in_flight"] else ""
    return (
        f"a call of {_label(estimate)} could cross {problem['budget']} = "
        f"{_num(problem['limit'])}: spent {_num(problem['spent'])}{in_flight}, this call's "
        f"worst case {_num(problem['estimate'])}"
    )


def _num(value: float) -> str:
    # Dollars as plain decimals (0.00001875, not 1.875e-05); token counts as they are.
    return f"{value:.8f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _exceeded(
    path: str, estimate: CallEstimate, problem: dict[str, Any], *, fallback: bool
) -> StepFailed:
    message = _describe(estimate, problem)
    if fallback:
        message += "; no fallback fits either"
    return StepFailed(
        ErrorContext.of(
            ErrorType.BUDGET_EXCEEDED,
            message,
            retryable=False,
            step_id=path,
            attempt=1,
            details={
                "provider": estimate.provider,
                "model": estimate.model,
                "budget": problem,
                "suggestions": [
                    "raise the budget, lower the step's max_tokens, or pick a cheaper model",
                    'on_budget: "fallback" or "skip" lets the run go on without this call',
                ],
            },
        )
    )
