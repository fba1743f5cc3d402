"""loop: run the block, then `until` (which sees that iteration's steps); stop when it holds
or after `max_iterations` (at most 100, so a loop's history stays bounded). Each iteration
starts from a fresh scope with `${iteration}` (from 1) and `${previous}` (the last iteration's
steps, null in the first) so a redraft can read the critique it answers."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

from worker.steps.base import Runner, StepAt, StepOutcome

with workflow.unsafe.imports_passed_through():
    from workflow_defs.expressions import compile_condition
    from workflow_defs.references import Resolver


async def run(runner: Runner, step: Any, at: StepAt) -> StepOutcome:
    cfg = step.config
    until = compile_condition(cfg.until)
    outputs: list[Any] = []
    output: Any = None
    met = False
    iteration = 0
    previous: dict[str, Any] | None = None
    for iteration in range(1, cfg.max_iterations + 1):
        scope = at.scope.child(iteration=iteration, previous=previous)
        output = await runner.run_block(
            cfg.steps, scope, prefix=f"{at.path}#{iteration}", parent=at.path
        )
        outputs.append(output)
        if cfg.keep_last is not None:
            outputs = outputs[-cfg.keep_last :]
        previous = scope.own_steps()
        resolver = Resolver(scope.namespace)
        met = bool(until.evaluate(resolver.lookup))
        at.resolver.warnings.extend(resolver.warnings)
        if met:
            break
    return StepOutcome(
        output=output,
        summary={"iterations": iteration, "until_met": met, "outputs": outputs},
    )
