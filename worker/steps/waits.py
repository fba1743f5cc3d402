"""Steps that wait for a person (approval) or an outside event (wait_for_event).

Decisions and events arrive as Temporal Updates on the interpreter (`approve`, `event`). Their
validators run before anything enters history, so a decision for nothing waiting (409), one
breaking the step's schema (422) or from a key not among `approvers` (403) is refused and the
caller learns why; `Waits` holds what the validators and the handlers look at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from worker import job_effects as effects
from worker.steps.base import Runner, StepAt, StepFailed, StepOutcome, deadline_context

with workflow.unsafe.imports_passed_through():
    import jsonschema

    from core.contracts import ApprovalDecision, EventDelivery, Waiting
    from core.errors import ErrorContext, ErrorType

# ApplicationError types the gateway maps to HTTP answers.
NOT_WAITING = "NOT_WAITING"  # 409
INVALID = "INVALID_DECISION"  # 422
FORBIDDEN = "FORBIDDEN"  # 403


@dataclass
class _Wait:
    info: Waiting
    schema: dict[str, Any] | None
    answer: Any = None
    answered: bool = False


class Waits:
    """The waits open in one run, by step path (approvals) and by event name."""

    def __init__(self) -> None:
        self.open: dict[str, _Wait] = {}

    def listing(self) -> list[Waiting]:
        return [w.info for w in self.open.values()]

    def _approval(self, path: str) -> _Wait:
        wait = self.open.get(path)
        if wait is None or wait.info.kind != "approval" or wait.answered:
            raise ApplicationError(
                f"no approval is waiting at {path!r} (not reached yet, or already decided)",
                type=NOT_WAITING,
                non_retryable=True,
            )
        return wait

    def _event(self, name: str) -> _Wait:
        for wait in self.open.values():
            if wait.info.kind == "event" and wait.info.event == name and not wait.answered:
                return wait
        raise ApplicationError(
            f"nothing is waiting for event {name!r}", type=NOT_WAITING, non_retryable=True
        )

    def validate_decision(self, decision: ApprovalDecision) -> None:
        wait = self._approval(decision.path)
        approvers = wait.info.approvers
        if approvers and decision.decided_by not in approvers:
            raise ApplicationError(
                f"{decision.decided_by!r} may not decide {decision.path!r}; approvers: "
                + ", ".join(approvers),
                type=FORBIDDEN,
                non_retryable=True,
            )
        _check_schema(wait.schema, decision.data, "data")

    def decide(self, decision: ApprovalDecision) -> dict[str, Any]:
        wait = self._approval(decision.path)
        wait.answer = {
            "approved": decision.approved,
            "decided_by": decision.decided_by,
            "comment": decision.comment,
            "data": decision.data,
            "decided_at": workflow.now().isoformat(),
        }
        wait.answered = True
        return dict(wait.answer)

    def validate_event(self, delivery: EventDelivery) -> None:
        wait = self._event(delivery.event)
        _check_schema(wait.schema, delivery.payload, "payload")

    def deliver(self, delivery: EventDelivery) -> Any:
        wait = self._event(delivery.event)
        wait.answer = delivery.payload
        wait.answered = True
        return delivery.payload


def _check_schema(schema: dict[str, Any] | None, value: Any, what: str) -> None:
    if not schema:
        return
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path)
    )
    if errors:
        problems = [
            {"loc": [what, *list(e.path)], "msg": e.message, "type": "schema"} for e in errors[:10]
        ]
        raise ApplicationError(
            f"{what} does not match the step's schema: {errors[0].message}",
            problems,
            type=INVALID,
            non_retryable=True,
        )


async def _wait(runner: Runner, step: Any, at: StepAt, info: Waiting, schema: Any) -> _Wait:
    waits: Waits = runner.waits
    wait = _Wait(info=info, schema=schema)
    waits.open[at.path] = wait
    runner.waiting_changed()
    await effects.note_waiting(runner.inp, runner.defn, info, waiting=True)
    try:
        limit = (runner.deadline - workflow.now()).total_seconds()
        timeout = step.config.timeout_seconds
        seconds = min(limit, timeout) if timeout else limit
        try:
            await workflow.wait_condition(
                lambda: wait.answered, timeout=timedelta(seconds=max(0.0, seconds))
            )
        except TimeoutError:
            if workflow.now() >= runner.deadline:
                raise StepFailed(deadline_context(at.path), timed_out=True) from None
    finally:
        del waits.open[at.path]
        runner.waiting_changed()
    # The mirror learns the wait is over whatever the outcome (not when the job is cancelled:
    # the final mirror write clears it).
    await effects.note_waiting(runner.inp, runner.defn, info, waiting=False)
    return wait


def _timed_out(at: StepAt, what: str) -> StepFailed:
    return StepFailed(
        ErrorContext.of(
            ErrorType.TIMEOUT,
            f"{what} did not come within the step's timeout_seconds",
            retryable=False,
            step_id=at.path,
            attempt=1,
        )
    )


async def run_approval(runner: Runner, step: Any, at: StepAt) -> StepOutcome:
    cfg = step.config
    info = _info(step, at, "approval")
    info.prompt = at.resolver.resolve(cfg.prompt) if cfg.prompt else None
    info.approvers = list(cfg.approvers)
    wait = await _wait(runner, step, at, info, cfg.schema_)
    if wait.answered:
        return StepOutcome(output=wait.answer)
    if cfg.on_timeout == "fail":
        raise _timed_out(at, "a decision")
    return StepOutcome(
        output={
            "approved": cfg.on_timeout == "approve",
            "decided_by": "timeout",
            "comment": f"no decision within {cfg.timeout_seconds} s",
            "data": {},
            "decided_at": workflow.now().isoformat(),
        }
    )


async def run_event(runner: Runner, step: Any, at: StepAt) -> StepOutcome:
    cfg = step.config
    info = _info(step, at, "event")
    info.event = cfg.event
    wait = await _wait(runner, step, at, info, cfg.schema_)
    if wait.answered:
        return StepOutcome(output=wait.answer)
    if cfg.on_timeout == "fail":
        raise _timed_out(at, f"event {cfg.event!r}")
    return StepOutcome(output=None)


def _info(step: Any, at: StepAt, kind: str) -> Waiting:
    now = workflow.now()
    timeout = step.config.timeout_seconds
    return Waiting(
        path=at.path,
        kind=kind,  # type: ignore[arg-type]
        since=now.isoformat(),
        timeout_at=(now + timedelta(seconds=timeout)).isoformat() if timeout else None,
    )
