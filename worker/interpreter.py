"""The interpreter: one generic Temporal workflow that runs any workflow definition.

Steps form a tree: a block is a list of steps, and control steps (parallel, foreach, switch,
loop) hold blocks. `run_block` runs a block's steps in order through `_run_step`, which does
what every step needs (when, rerun reuse, records, progress, error_mode, output bounds) and
hands the step itself to its type's handler in worker/steps/. Each I/O step is one activity
(Temporal owns retries, timeouts, backoff and crash recovery); transforms and conditions are
pure and run here. The run's input carries the resolved definition snapshot, so a replay never
depends on files on disk.

Records are keyed by path: `enrich[3].summarize` (foreach item 3), `checks.weather.fetch`
(parallel branch), `refine#2.critique` (loop iteration 2), `route.reply` (switch); a top-level
step's path is its id.

Determinism: only workflow_defs/ (pure), core/ models and activity input models are imported,
all passed through the sandbox. Anything that changes command order must be guarded with
`workflow.patched` — the histories under tests/histories/ are replayed in CI.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from worker import job_effects as effects
from worker.budgets import Frame, Ledger
from worker.steps import HANDLERS
from worker.steps.base import Scope, StepAt, StepFailed, StepOutcome
from worker.steps.waits import Waits

with workflow.unsafe.imports_passed_through():
    from core.contracts import (
        ApprovalDecision,
        EventDelivery,
        InterpreterInput,
        JobMetadata,
        JobResult,
        Progress,
        StepRecord,
    )
    from core.errors import ErrorContext, ErrorType
    from core.payload_limits import RESULT_LIMIT, STEP_OUTPUT_DEFAULT, describe, json_size
    from core.search_attributes import JOB_STATUS as JOB_STATUS_SA
    from worker.limits import too_large
    from worker.step_inputs import definition_of, step_view
    from workflow_defs.expressions import compile_condition
    from workflow_defs.references import Resolver
    from workflow_defs.schema import WorkflowDefinition
    from workflow_defs.tree import streamed_ids

__all__ = ["InterpreterWorkflow", "StepFailed"]


@workflow.defn(name="InterpreterWorkflow")
class InterpreterWorkflow:
    inp: InterpreterInput
    defn: WorkflowDefinition
    deadline: datetime

    def __init__(self) -> None:
        self._progress = Progress()
        self._records: dict[str, StepRecord] = {}  # by path, in the order steps started
        self._children: dict[str, list[StepRecord]] = {}  # control step path → its records
        self._streamed: frozenset[str] = frozenset()  # ids of llm steps with stream: true
        self.waits = Waits()
        self.ledger = Ledger({})

    @workflow.query(name="progress")
    def progress(self) -> Progress:
        finished = {
            path: self._finished_view(record)
            for path, record in self._records.items()
            if record.status not in ("pending", "running")
        }
        started = {path: r.started_at for path, r in self._records.items() if r.started_at}
        return self._progress.model_copy(
            update={
                "finished": finished,
                "started": started,
                "tokens": self.ledger.tokens,
                "cost_usd": round(self.ledger.cost_usd, 6),
            }
        )

    def _finished_view(self, record: StepRecord) -> dict[str, Any]:
        view: dict[str, Any] = {"status": record.status, "attempts": record.attempts}
        if record.tokens:
            view.update(tokens=record.tokens, cost_usd=record.cost_usd)
        if record.duration_ms is not None:
            view["duration_ms"] = record.duration_ms
        if record.error is not None:
            view["error"] = record.error
        if record.id in self._streamed and isinstance(record.output, dict):
            view["text"] = record.output.get("content")
        return view

    # Approvals and events are Updates: the validators refuse a bad one before it enters
    # history, and the caller gets the step's output (or why not) back.
    @workflow.update(name="approve")
    def approve(self, decision: ApprovalDecision) -> dict[str, Any]:
        return self.waits.decide(decision)

    @approve.validator
    def _validate_approve(self, decision: ApprovalDecision) -> None:
        self.waits.validate_decision(decision)

    @workflow.update(name="event")
    def event(self, delivery: EventDelivery) -> Any:
        return self.waits.deliver(delivery)

    @event.validator
    def _validate_event(self, delivery: EventDelivery) -> None:
        self.waits.validate_event(delivery)

    def waiting_changed(self) -> None:
        self._progress.waiting = self.waits.listing()
        workflow.set_current_details(self._details())

    @workflow.run
    async def run(self, inp: InterpreterInput) -> JobResult:
        defn = definition_of(inp.definition)
        self.inp, self.defn = inp, defn
        self._streamed = streamed_ids(defn.steps)
        started = workflow.now()
        self.deadline = started + timedelta(seconds=defn.timeout_seconds)
        self._progress = Progress(
            total_steps=len(defn.steps),
            status="running",
            steps={s.id: "pending" for s in defn.steps},
        )
        scope = Scope(
            {
                "input": inp.input_data,
                "steps": {},
                "context": {
                    "job_id": inp.job_id,
                    "workflow_name": defn.name,
                    "workflow_version": defn.version,
                    "started_at": started.isoformat(),
                    "run_id": workflow.info().run_id,
                },
            }
        )
        self.ledger = Ledger.for_job(scope.namespace["context"], defn.budget, inp.options.budget)
        if inp.options.search_attributes:
            workflow.upsert_search_attributes([JOB_STATUS_SA.value_set("running")])
        running_mirror = effects.start_mirror(inp, defn, "running", started_at=started.isoformat())

        status = "completed"
        error: ErrorContext | None = None
        output: Any = None
        try:
            last_output = await self.run_block(defn.steps, scope, prefix="", parent=None)
            if defn.output is not None:
                output = Resolver(scope.namespace).resolve(defn.output)
            else:
                output = last_output
        except StepFailed as failed:
            status = "timed_out" if failed.timed_out else "failed"
            error = failed.context
        except asyncio.CancelledError:
            status = "cancelled"
            error = ErrorContext.of(ErrorType.CANCELLED, "job was cancelled", retryable=False)
        records = self._collect(defn)
        top_level = [r for r in records if r.parent is None]

        finished = workflow.now()
        metadata = JobMetadata(
            duration_ms=int((finished - started).total_seconds() * 1000),
            # Control steps carry what ran inside them: top-level records add up to the job.
            total_tokens=sum(r.tokens for r in top_level),
            total_cost_usd=round(sum(r.cost_usd for r in top_level), 6),
            definition_hash=inp.definition.content_hash,
            steps=records,
        )
        result = JobResult(
            status=status,  # type: ignore[arg-type]
            output=output,
            error=error.model_dump(mode="json") if error else None,
            metadata=metadata,
        )
        result, error = self._within_result_limit(result, error)
        status = result.status
        self._progress.status = result.status
        self._progress.current_step = None
        self._progress.current_step_name = None
        self._progress.running = []
        workflow.set_current_details(self._details())
        if inp.options.search_attributes:
            workflow.upsert_search_attributes([JOB_STATUS_SA.value_set(status)])
        if running_mirror is not None:
            try:
                await running_mirror[0]
            except effects.MIRROR_FAILED:
                pass  # the final write below carries everything the "running" row would
        final_mirror = effects.start_mirror(
            inp,
            defn,
            status,
            started_at=started.isoformat(),
            completed_at=finished.isoformat(),
            result=result,
        )
        if final_mirror is not None:
            await effects.finish_mirror(inp, status, *final_mirror)
        if inp.webhook is not None:
            await effects.start_completion_webhook(inp, defn, result)
        # Added after histories were recorded: failed runs now raise an alert first.
        if error is not None and status != "cancelled" and workflow.patched("alert-on-job-failure"):
            await effects.alert_failure(inp, defn, status, error)

        if status == "cancelled":
            raise asyncio.CancelledError()
        if error is not None:
            raise ApplicationError(
                f"{error.step_id or 'job'}: {error.message}",
                error.model_dump(mode="json"),
                type=error.type,
                non_retryable=True,
            )
        return result

    async def run_block(
        self, steps: list[Any], scope: Scope, *, prefix: str, parent: str | None
    ) -> Any:
        """Run a block's steps in order; returns the last output of a step that ran."""
        last: Any = None
        for step in steps:
            path = f"{prefix}.{step.id}" if prefix else step.id
            record = await self._run_step(step, path, parent, scope)
            if record.status != "skipped":
                last = record.output
        return last

    async def _run_step(self, step: Any, path: str, parent: str | None, scope: Scope) -> StepRecord:
        now = workflow.now()
        record = StepRecord(
            id=step.id, type=step.type, path=path, parent=parent, started_at=now.isoformat()
        )
        self._records[path] = record
        if parent is not None:
            self._children.setdefault(parent, []).append(record)
        at = StepAt(path=path, parent=parent, scope=scope, resolver=Resolver(scope.namespace))
        self._started(step, path)
        outcome = StepOutcome()
        try:
            if step.when is not None and not compile_condition(step.when).evaluate(
                at.resolver.lookup
            ):
                record.status = "skipped"
            elif parent is None and step.id in self.inp.options.reuse_steps:
                record.status = "completed"
                record.output = self.inp.options.reuse_steps[step.id]
                record.warnings.append("output reused from an earlier run")
                self._restore_exported(step, scope)
            else:
                budget = getattr(step, "budget", None)
                if budget is not None and step.blocks():
                    self.ledger.open_step(path, step.id, budget)
                outcome = await self._execute(step, at)
                # Leaf steps' own spend, and what a control step's child workflows reported.
                self.ledger.add(self.budget_frames(path), outcome.tokens, outcome.cost_usd)
                record.attempts = outcome.attempts
                record.output = self._bounded(step, path, outcome.output)
                record.tokens, record.cost_usd = outcome.tokens, outcome.cost_usd
                record.warnings.extend(outcome.warnings)
                record.summary = outcome.summary
                record.status = "completed"
        except StepFailed as failed:
            record.status = "failed"
            record.error = failed.context.model_dump(mode="json")
            record.summary = failed.summary
            record.attempts = failed.context.attempt or record.attempts or 1
            mode = self.defn.step_error_mode(step)
            if failed.timed_out or mode != "continue":
                self._finish(record, step, at, outcome.content, now)
                raise
            record.output = step.default
        except asyncio.CancelledError:
            record.status = "cancelled"
            # It had started an attempt (an activity's, a block's) when the job was cancelled.
            record.attempts = record.attempts or 1
            self._finish(record, step, at, None, now)
            raise
        self._finish(record, step, at, outcome.content, now)
        if step.type == "llm" and record.status == "completed" and self.inp.labels.debug_mode:
            # Only runs asked for debug_mode send these, so older histories replay unchanged.
            await effects.start_llm_step_webhook(self.inp, self.defn, record)
        return record

    def budget_frames(self, path: str) -> list[Frame]:
        """The budgets that bound a step at `path`: its own (a control step's), every control
        step's above it, then the job's."""
        frames: list[Frame] = []
        current: str | None = path
        while current is not None:
            frame = self.ledger.steps.get(current)
            if frame is not None:
                frames.append(frame)
            record = self._records.get(current)
            current = record.parent if record is not None else None
        return frames + self.ledger.job

    async def _execute(self, step: Any, at: StepAt) -> StepOutcome:
        handler = HANDLERS[step.type]
        if not step.blocks():
            return await handler(self, step, at)
        # Control steps: `timeout_seconds` bounds the whole block, `retry` runs it again.
        attempts = step.retry.max_retries + 1 if step.retry else 1
        delay = step.retry.initial_delay if step.retry else 0.0
        for attempt in range(1, attempts + 1):
            try:
                if step.timeout_seconds:
                    outcome = await asyncio.wait_for(handler(self, step, at), step.timeout_seconds)
                else:
                    outcome = await handler(self, step, at)
                outcome.attempts = attempt
                return outcome
            except TimeoutError:
                failed = StepFailed(
                    ErrorContext.of(
                        ErrorType.TIMEOUT,
                        f"the block took longer than its timeout_seconds ({step.timeout_seconds})",
                        retryable=True,
                        step_id=at.path,
                        attempt=attempt,
                    )
                )
            except StepFailed as exc:
                failed = exc
            if attempt == attempts or failed.timed_out or not failed.context.retryable:
                raise failed
            assert step.retry is not None
            await workflow.sleep(min(delay, step.retry.max_delay))
            delay *= step.retry.exponential_base
        raise AssertionError("unreachable")

    def _started(self, step: Any, path: str) -> None:
        progress = self._progress
        progress.current_step = path
        progress.current_step_name = step.display_name or step.id
        progress.steps[path] = "running"
        progress.running.append(path)
        workflow.set_current_details(self._details())

    def _restore_exported(self, step: Any, scope: Scope) -> None:
        """A reused parallel's branch steps did not run here, yet later steps read them by id:
        give them the outputs the earlier run recorded."""
        kept = self.inp.options.reuse_exported
        for block in step.blocks() if step.type == "parallel" else ():
            for inner in block.steps:
                if inner.id in kept:
                    output = kept[inner.id]
                    content = output.get("content", output) if isinstance(output, dict) else output
                    scope.steps[inner.id] = step_view(
                        output, "completed", None, inner.outputs, content
                    )

    def _finish(
        self, record: StepRecord, step: Any, at: StepAt, content: Any, started: datetime
    ) -> None:
        record.duration_ms = int((workflow.now() - started).total_seconds() * 1000)
        if record.status != "skipped":
            # A skipped step's `when` may read inputs that are absent on purpose: no warning.
            record.warnings.extend(at.resolver.warnings)
        if step.blocks():
            # Everything that ran inside counts here, whatever became of the block (on top of
            # what the handler reports from child workflows: a batched foreach). Kept to the
            # 8 decimals calls are priced to: rounding each level to 6 drifted the job's total
            # away from the sum of what the providers billed.
            children = self._children.get(record.path or record.id, [])
            record.tokens += sum(child.tokens for child in children)
            record.cost_usd = round(record.cost_usd + sum(c.cost_usd for c in children), 8)
        progress = self._progress
        progress.steps[at.path] = record.status
        if at.path in progress.running:
            progress.running.remove(at.path)
        progress.current_step = progress.running[-1] if progress.running else None
        if at.parent is None:
            progress.completed_steps += 1
        if content is None and isinstance(record.output, dict):
            content = record.output.get("content", record.output)
        elif content is None:
            content = record.output
        at.scope.steps[step.id] = step_view(
            record.output, record.status, record.error, step.outputs, content
        )

    def _bounded(self, step: Any, path: str, output: Any) -> Any:
        """The step's output, or PAYLOAD_TOO_LARGE when it would not fit Temporal's limits."""
        limit = step.max_output_bytes or STEP_OUTPUT_DEFAULT
        size = json_size(output)
        if size > limit:
            raise StepFailed(too_large(path, f"the step's output is {describe(size)}", limit))
        return output

    def _within_result_limit(
        self, result: JobResult, error: ErrorContext | None
    ) -> tuple[JobResult, ErrorContext | None]:
        """A result Temporal would reject would fail every completion attempt and leave the run
        open forever: end the job failed instead, with the step outputs dropped."""
        size = json_size(result)
        if size <= RESULT_LIMIT:
            return result, error
        error = too_large(None, f"the job's result is {describe(size)}", RESULT_LIMIT)
        for record in result.metadata.steps:
            record.output = None
        return result.model_copy(
            update={
                "status": "failed",
                "output": None,
                "error": error.model_dump(mode="json"),
            }
        ), error

    def _collect(self, defn: WorkflowDefinition) -> list[StepRecord]:
        # Execution order; top-level steps never reached still get a (pending) record, so the
        # result lists every step of the definition.
        records = list(self._records.values())
        for step in defn.steps:
            if step.id not in self._records:
                records.append(StepRecord(id=step.id, type=step.type, path=step.id))
        return records

    def _details(self) -> str:
        p = self._progress
        lines = [f"**{p.status}** — {p.completed_steps}/{p.total_steps} steps"]
        if p.running:
            lines.append("running: " + ", ".join(f"`{path}`" for path in p.running))
        for wait in p.waiting:
            what = (
                f"approval of `{wait.path}`" if wait.kind == "approval" else f"event `{wait.event}`"
            )
            lines.append(f"waiting for {what}" + (f": {wait.prompt}" if wait.prompt else ""))
        lines.extend(f"- `{sid}`: {st}" for sid, st in p.steps.items())
        return "\n".join(lines)
