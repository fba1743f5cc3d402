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

from worker.budgets import Ledger
from worker.steps.base import Runner, StepAt, StepFailed, StepOutcome, cancel_all, failure

with workflow.unsafe.imports_passed_through():
    from core.contracts import FOREACH_BATCH_WORKFLOW, ForeachBatchInput, ForeachBatchResult
    from core.errors import ErrorContext, ErrorType
    from core.payload_limits import ACTIVITY_INPUT_LIMIT, RESULT_LIMIT, describe, json_size
    from worker.limits import too_large
    from workflow_defs.references import Resolver
    from workflow_defs.schema import parse_tolerance

# Up to BATCH_THRESHOLD items run in this workflow (about 3 history events per item and
# activity: a few hundred events). Above it, items run in child workflows of `batch_size`
# (each child's history stays near 3 events per item, the parent's near 3 per batch), so
# even MAX_ITEMS items keep every history far below Temporal's 50,000-event limit.
BATCH_THRESHOLD = 100
MAX_ITEMS = 10_000


async def run(runner: Runner, step: Any, at: StepAt) -> StepOutcome:
    cfg = step.config
    items = _items(at.resolver.resolve(cfg.items), at.path)
    concurrency = _concurrency(at.resolver.resolve(cfg.max_concurrency), at.path)
    tolerated = _tolerated(cfg.tolerated_failures, len(items))
    # A rerun of a failed foreach from itself runs only the items that did not complete.
    reused = {int(i): out for i, out in runner.inp.options.reuse_items.get(at.path, {}).items()}
    if len(items) - len(reused) > BATCH_THRESHOLD:
        return await _run_batched(runner, step, at, items, concurrency, tolerated, reused)
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

    todo = [i for i in range(len(items)) if i not in reused]
    tasks = [asyncio.create_task(one(i, items[i])) for i in todo]
    results: dict[int, Any] = dict(reused)
    failures: dict[int, StepFailed] = {}
    pending = list(tasks)
    try:
        while pending:
            done, pending = await workflow.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for index, task in zip(todo, tasks, strict=True):  # item order, on every replay
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
        await cancel_all(pending)
    summary = {
        "items": len(items),
        "completed": len(results),
        "failed": sorted(failures),
        "max_concurrency": concurrency,
        **({"reused": len(reused)} if reused else {}),
    }
    contexts = {i: f.context for i, f in failures.items()}
    timed_out = any(f.timed_out for f in failures.values())
    return _outcome(cfg, len(items), results, contexts, tolerated, summary, timed_out=timed_out)


def _outcome(
    cfg: Any,
    count: int,
    results: dict[int, Any],
    failures: dict[int, ErrorContext],
    tolerated: int,
    summary: dict[str, Any],
    *,
    timed_out: bool = False,
    tokens: int = 0,
    cost_usd: float = 0.0,
) -> StepOutcome:
    if cfg.on_item_error == "fail" and len(failures) > tolerated:
        first = failures[min(failures)]
        context = first.model_copy(
            update={
                "message": f"{len(failures)} of {count} items failed (tolerated: "
                f"{tolerated}); first, item {min(failures)}: {first.message}"
            }
        )
        # The completed items' outputs stay with the record: a rerun from this step reuses
        # them and runs only the failed and unrun items (a redrive).
        kept = {**summary, "item_outputs": {str(i): results[i] for i in sorted(results)}}
        raise StepFailed(context, timed_out=timed_out, summary=kept)
    if cfg.on_item_error == "drop":
        output = [results[i] for i in range(count) if i in results]
    else:
        output = [results.get(i) for i in range(count)]
    return StepOutcome(output=output, summary=summary, tokens=tokens, cost_usd=cost_usd)


async def _run_batched(
    runner: Runner,
    step: Any,
    at: StepAt,
    items: list[Any],
    concurrency: int,
    tolerated: int,
    reused: dict[int, Any],
) -> StepOutcome:
    cfg = step.config
    namespace = {**at.scope.namespace, "steps": dict(at.scope.steps)}
    job = runner.inp.model_copy(update={"webhook": None})
    todo = [i for i in range(len(items)) if i not in reused]
    batches = [todo[n : n + cfg.batch_size] for n in range(0, len(todo), cfg.batch_size)]
    gate = asyncio.Semaphore(concurrency)
    run_id = workflow.info().run_id
    # Batches run at once and can't see each other's spend: each gets an equal share of
    # what the budgets above have left, reserved here until the foreach ends.
    frames = runner.budget_frames(at.path)
    share = Ledger.share(frames, len(batches)) if batches else None
    reservation = (
        Ledger.reserve(
            frames,
            (share.max_tokens or 0) * len(batches),
            round((share.max_cost_usd or 0.0) * len(batches), 8),
        )
        if share is not None
        else None
    )

    async def one(number: int, indexes: list[int]) -> ForeachBatchResult:
        async with gate:
            contiguous = indexes == list(range(indexes[0], indexes[0] + len(indexes)))
            batch = ForeachBatchInput(
                job=job,
                step_id=step.id,
                path=at.path,
                offset=indexes[0],
                items=[items[i] for i in indexes],
                indexes=None if contiguous else indexes,
                namespace=namespace,
                deadline=runner.deadline.isoformat(),
                budget=share,
            )
            size = json_size(batch)
            if size > ACTIVITY_INPUT_LIMIT:
                raise StepFailed(
                    too_large(at.path, f"a batch's input is {describe(size)}", ACTIVITY_INPUT_LIMIT)
                )
            return await workflow.execute_child_workflow(
                FOREACH_BATCH_WORKFLOW,
                batch,
                id=f"{runner.inp.job_id}:foreach:{run_id}:{at.path}:{number}",
                result_type=ForeachBatchResult,
                static_summary=f"{at.path} items {indexes[0]}-{indexes[-1]}",
            )

    tasks = [asyncio.create_task(one(n, indexes)) for n, indexes in enumerate(batches)]
    results: dict[int, Any] = dict(reused)
    failures: dict[int, ErrorContext] = {}
    tokens, cost = 0, 0.0
    pending = list(tasks)
    try:
        while pending:
            done, pending = await workflow.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:  # batch order: the same on every replay
                if task not in done or task.cancelled():
                    continue
                error = task.exception()
                if isinstance(error, StepFailed):
                    raise error
                if error is not None:
                    raise failure(
                        ErrorType.INTERNAL_ERROR, f"a foreach batch failed: {error}", at.path
                    )
                batch_result = task.result()
                results.update(batch_result.outputs)
                for index, context in batch_result.failures.items():
                    failures[index] = ErrorContext.model_validate(context)
                tokens += batch_result.tokens
                cost += batch_result.cost_usd
            if cfg.on_item_error == "fail" and len(failures) > tolerated:
                break
    finally:
        await cancel_all(pending)  # cancels the child workflows too
        if reservation is not None:
            reservation.release()
    summary = {
        "items": len(items),
        "completed": len(results),
        "failed": sorted(failures),
        "max_concurrency": concurrency,
        "batches": len(batches),
        "batch_size": cfg.batch_size,
        **({"reused": len(reused)} if reused else {}),
    }
    return _outcome(
        cfg,
        len(items),
        results,
        failures,
        tolerated,
        summary,
        tokens=tokens,
        cost_usd=round(cost, 8),
    )


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
