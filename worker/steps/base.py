"""What every step handler shares: the scope it runs in, what it returns, how it fails.

Workflow code: pure, deterministic. A handler gets the runner (the interpreter), the step, its
record path and its scope, and returns a StepOutcome or raises StepFailed. Control-flow handlers
run their blocks through `runner.run_block`, which runs each inner step the same way as a
top-level one (when/error_mode/records/progress), so nesting needs nothing special.
"""

from __future__ import annotations

from collections import ChainMap
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.contracts import InterpreterInput
    from core.errors import ErrorContext, ErrorType
    from workflow_defs.references import Resolver
    from workflow_defs.schema import WorkflowDefinition


class StepFailed(Exception):
    def __init__(
        self,
        context: ErrorContext,
        *,
        timed_out: bool = False,
        summary: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(context.message)
        self.context = context
        self.timed_out = timed_out
        # What the failed step's record keeps (a foreach: the items that completed).
        self.summary = summary


@dataclass
class Scope:
    """The namespace references resolve against. A block runs in a child scope: its steps
    see what the parent saw, and what they add stays inside unless exported."""

    namespace: dict[str, Any]

    @property
    def steps(self) -> Any:
        return self.namespace["steps"]

    def child(self, **variables: Any) -> Scope:
        return Scope({**self.namespace, "steps": ChainMap({}, self.steps), **variables})

    def own_steps(self) -> dict[str, Any]:
        """The step views written in this scope (not inherited)."""
        steps = self.steps
        return dict(steps.maps[0]) if isinstance(steps, ChainMap) else dict(steps)


@dataclass
class StepAt:
    """Where a step runs: its record path (`enrich[3].summarize`), the control step holding
    it, its scope, and the resolver whose warnings land in its record."""

    path: str
    parent: str | None
    scope: Scope
    resolver: Resolver


@dataclass
class StepOutcome:
    output: Any = None
    attempts: int = 1
    tokens: int = 0
    cost_usd: float = 0.0
    warnings: list[str] = field(default_factory=list)
    # What the step's `outputs` names publish (an llm step's text); None → the output.
    content: Any = None
    # A control step's own summary (branches taken, items done/failed, iterations).
    summary: dict[str, Any] | None = None


class Runner(Protocol):
    inp: InterpreterInput
    defn: WorkflowDefinition
    deadline: datetime
    waits: Any  # worker.steps.waits.Waits: the approvals and events open in this run

    def waiting_changed(self) -> None: ...

    def budget_frames(self, path: str) -> list[Any]: ...

    async def run_block(
        self, steps: list[Any], scope: Scope, *, prefix: str, parent: str
    ) -> Any: ...


def failure(kind: ErrorType, message: str, step_path: str, **details: Any) -> StepFailed:
    return StepFailed(
        ErrorContext.of(
            kind, message, retryable=False, step_id=step_path, attempt=1, details=details or None
        )
    )


def deadline_context(step_path: str) -> ErrorContext:
    return ErrorContext.of(
        ErrorType.WORKFLOW_TIMEOUT,
        "the workflow's timeout_seconds elapsed",
        retryable=False,
        step_id=step_path,
        details={"suggestions": ["raise the definition's timeout_seconds"]},
    )


async def cancel_all(pending: list[Any]) -> None:
    """Cancel the tasks still running (branches, items, batches) and wait until they stop, so
    their records and child workflows settle before the step ends."""
    for task in pending:
        task.cancel()
    if pending:
        await workflow.wait(pending)
