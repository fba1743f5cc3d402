"""switch: the first case whose `when` holds runs; else `default`; else the step fails."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

from worker.steps.base import Runner, StepAt, StepOutcome, failure

with workflow.unsafe.imports_passed_through():
    from core.errors import ErrorType
    from workflow_defs.expressions import compile_condition


async def run(runner: Runner, step: Any, at: StepAt) -> StepOutcome:
    cfg = step.config
    chosen: tuple[str, list[Any]] | None = None
    for index, case in enumerate(cfg.cases):
        if compile_condition(case.when).evaluate(at.resolver.lookup):
            chosen = (f"case{index}", case.steps)
            break
    if chosen is None and cfg.default:
        chosen = ("default", cfg.default)
    if chosen is None:
        whens = "; ".join(case.when for case in cfg.cases)
        raise failure(
            ErrorType.VALIDATION_ERROR,
            f"no case matched ({whens}) and the switch has no default",
            at.path,
            suggestions=["add a default block, or a case that always holds"],
        )
    label, steps = chosen
    output = await runner.run_block(steps, at.scope.child(), prefix=at.path, parent=at.path)
    case_index = int(label[4:]) if label.startswith("case") else None
    summary: dict[str, Any] = {"case": label}
    if case_index is not None:
        summary["when"] = cfg.cases[case_index].when
    return StepOutcome(output=output, summary=summary)
