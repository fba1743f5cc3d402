"""foreach: the block once per item, at most `max_concurrency` items at a time.

An item that fails counts against `tolerated_failures` (`on_item_error: fail`, the default):
past it, the items still running are cancelled and the step fails; within it, the item's output
is null. `on_item_error: null` / `drop` never fail the step: the item is null or left out.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from temporalio import workflow

from worker.steps.base import Runner, StepAt, StepFailed, StepOutcome, failure

with workflow.unsafe.imports_passed_through():
    from core.errors import ErrorType
    from core.payload_limits import RESULT_LIMIT, describe, json_size
    from worker.limits import too_large
    from workflow_defs.references import Resolver
    from workflow_defs.schema import parse_tolerance

# Past this many items a foreach's history would grow without bound in one run; batching
# items into child workflows is how such lists will run, until then they are refused.
MAX_ITEMS = 1000


async def run(runner: Runner, step: Any, at: StepAt) -> StepOutcome:
    cfg = step.config
    items = _items(at.resolver.resolve(cfg.items), at.path)
    concurrency = _concurrency(at.resolver.resolve(cfg.max_concurrency), at.path)
    tolerated = _tolerated(cfg.tolerated_failures, len(items))
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, item: Any) -> Any:
        async with gate:
            scope = at.scope.child(**{cfg.as_: item, cfg.index_as: index})
            output = await runner.run_block(
                cfg.steps, scope, prefix=f"{at.path}[{index}]", parent=at.path
            )
            if cfg.output is not None:
                resolver = Resolver(scope.namespace)
                output = resolver.resolve(cfg.output)
            return output

    tasks = [asyncio.create_task(one(i, item)) for i, item in enumerate(items)]
    results: dict[int, Any] = {}
    failures: dict[int, StepFailed] = {}
    pending = list(tasks)
    try:
        while pending:
            done, pending = await workflow.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for index, task in enumerate(tasks):  # item order: the same on every replay
                if task not in done or index in results or index in failures:
                    continue
                if task.cancelled():
                    continue
                error = task.exception()
                if error is None:
                    results[index] = task.result()
                elif isinstance(error, StepFailed):
                    failures[index] = error
                else:
                    raise error
            if cfg.on_item_error == "fail" and len(failures) > tolerated:
                break
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await workflow.wait(pending)
    summary = {
        "items": len(items),
        "completed": len(results),
        "failed": sorted(failures),
        "max_concurrency": concurrency,
    }
    if cfg.on_item_error == "fail" and len(failures) > tolerated:
        first = failures[min(failures)]
        context = first.context.model_copy(
            update={
                "message": f"{len(failures)} of {len(items)} items failed (tolerated: "
                f"{tolerated}); first, item {min(failures)}: {first.context.message}"
            }
        )
        raise StepFailed(context, timed_out=first.timed_out)
    if cfg.on_item_error == "drop":
        output = [results[i] for i in range(len(items)) if i in results]
    else:
        output = [results.get(i) for i in range(len(items))]
    return StepOutcome(output=output, summary=summary)


def _items(value: Any, path: str) -> list[Any]:
    if isinstance(value, dict):
        items: list[Any] = sorted(value)  # an object iterates its keys, in a stable order
    elif isinstance(value, list):
        items = value
    else:
        raise failure(
            ErrorType.VALIDATION_ERROR,
            f"items must be a list or an object (got {type(value).__name__})",
            path,
        )
    if len(items) > MAX_ITEMS:
        raise failure(
            ErrorType.VALIDATION_ERROR,
            f"{len(items)} items, over the {MAX_ITEMS} a foreach runs in one job",
            path,
            suggestions=["split the list, or run the items through several jobs"],
        )
    size = json_size(items)
    if size > RESULT_LIMIT:
        raise StepFailed(too_large(path, f"the item list is {describe(size)}", RESULT_LIMIT))
    return items


def _concurrency(value: Any, path: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise failure(
            ErrorType.VALIDATION_ERROR, f"max_concurrency must be a number (got {value!r})", path
        ) from None
    return max(1, min(100, number))


def _tolerated(value: int | str, count: int) -> int:
    if isinstance(value, int):
        return value
    share = parse_tolerance(value)
    if share is None:
        return 0
    return math.floor(share * count) if value.strip().endswith("%") else int(share)
