"""parallel: branches run at once; `fail_fast` cancels the rest on the first failure, `join:
any` takes the first branch to finish. Branch steps stay referable by id afterwards."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow

from worker.steps.base import Runner, StepAt, StepFailed, StepOutcome, cancel_all


async def run(runner: Runner, step: Any, at: StepAt) -> StepOutcome:
    cfg = step.config
    scopes = {name: at.scope.child() for name in cfg.branches}
    tasks = {
        name: asyncio.create_task(
            runner.run_block(blocks, scopes[name], prefix=f"{at.path}.{name}", parent=at.path)
        )
        for name, blocks in cfg.branches.items()
    }
    order = list(tasks)
    outputs: dict[str, Any] = {}
    failed: StepFailed | None = None
    winner: str | None = None
    pending = list(tasks.values())
    try:
        while pending:
            done, pending = await workflow.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for name in order:  # definition order: the same on every replay
                task = tasks[name]
                if task not in done or task.cancelled():
                    continue
                error = task.exception()
                if error is None:
                    outputs[name] = task.result()
                    winner = winner or name
                elif isinstance(error, StepFailed):
                    failed = failed or error
                else:
                    raise error
            if (failed is not None and cfg.fail_fast) or (cfg.join == "any" and winner):
                break
    finally:
        # Also on cancellation of the job: every branch still running is cancelled with it.
        await cancel_all(pending)
    if failed is not None and not (cfg.join == "any" and winner):
        raise failed
    # What the branches' own steps wrote is visible after the parallel, by id.
    for name in order:
        at.scope.steps.update(scopes[name].own_steps())
    if cfg.join == "any" and winner:
        outputs = {winner: outputs[winner]}
    cancelled = [name for name in order if name not in outputs and tasks[name].cancelled()]
    return StepOutcome(
        output=outputs,
        summary={
            "branches": order,
            "completed": [n for n in order if n in outputs],
            "cancelled": cancelled,
            **({"winner": winner} if cfg.join == "any" else {}),
        },
    )
