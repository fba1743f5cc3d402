"""A large foreach runs its items in child workflows of `batch_size` items each.

Every item of a foreach costs its history a few events per activity; past a few hundred items a
single history would head for Temporal's limits (Step Functions users meet the same wall at
25,000 events). Each batch is one `ForeachBatchWorkflow` run: the interpreter's own step
machinery (records, error modes, bounds) over its slice of the items, one item at a time, so
the parent keeps at most `max_concurrency` items in flight by keeping that many batches open.
The item records live in the batch's history (a child in the Web UI); the parent keeps the
foreach's record, its summary and the rolled-up tokens and cost.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

from worker.budgets import Frame, Ledger
from worker.interpreter import InterpreterWorkflow
from worker.steps.base import Scope, StepFailed

with workflow.unsafe.imports_passed_through():
    from core.contracts import ForeachBatchInput, ForeachBatchResult
    from worker.step_inputs import definition_of
    from workflow_defs.references import Resolver
    from workflow_defs.tree import walk_steps


@workflow.defn(name="ForeachBatchWorkflow")
class ForeachBatchWorkflow(InterpreterWorkflow):
    @workflow.run
    async def run(self, batch: ForeachBatchInput) -> ForeachBatchResult:  # type: ignore[override]
        self.inp = batch.job
        self.defn = definition_of(batch.job.definition)
        self.deadline = datetime.fromisoformat(batch.deadline)
        step = next(loc.step for loc in walk_steps(self.defn.steps) if loc.step.id == batch.step_id)
        cfg = step.config
        scope = Scope(dict(batch.namespace))
        if batch.budget is not None:
            # Spend starts from the parent's (what ${context.cost_usd} read); the batch is
            # bounded by its share of the budgets above the foreach.
            context = scope.namespace["context"] = dict(scope.namespace["context"])
            self.ledger = Ledger(
                context,
                job=[
                    Frame.of(batch.budget, f"batch share of the budgets over steps.{batch.step_id}")
                ],
                tokens=int(context.get("tokens") or 0),
                cost_usd=float(context.get("cost_usd") or 0.0),
            )
        result = ForeachBatchResult()
        indexes = batch.indexes or [batch.offset + n for n in range(len(batch.items))]
        for index, item in zip(indexes, batch.items, strict=True):
            item_scope = scope.child(**{cfg.as_: item, cfg.index_as: index})
            try:
                output = await self.run_block(
                    cfg.steps, item_scope, prefix=f"{batch.path}[{index}]", parent=batch.path
                )
                if cfg.output is not None:
                    output = Resolver(item_scope.namespace).resolve(cfg.output)
                result.outputs[index] = output
            except StepFailed as failed:
                result.failures[index] = failed.context.model_dump(mode="json")
        records = self._children.get(batch.path, [])
        result.tokens = sum(r.tokens for r in records)
        result.cost_usd = round(sum(r.cost_usd for r in records), 8)
        return result

    def _details(self) -> str:
        p = self._progress
        return f"foreach batch: {len([s for s in p.steps.values() if s != 'running'])} steps done"
