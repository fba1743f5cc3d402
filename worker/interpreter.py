"""The interpreter: one generic Temporal workflow that runs any workflow definition.

Each I/O step is one activity (Temporal owns retries, timeouts, backoff and crash recovery);
transforms and conditions are pure and run here, with no activity round trip. The run's input
carries the resolved definition snapshot, so a replay never depends on files on disk.

Determinism: only workflow_defs/ (pure), core/ models and activity input models are imported,
all passed through the sandbox. Anything that changes command order must be guarded with
`workflow.patched` — the histories under tests/histories/ are replayed in CI.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

from worker import job_effects as effects

with workflow.unsafe.imports_passed_through():
    from core.contracts import (
        InterpreterInput,
        JobMetadata,
        JobResult,
        Progress,
        StepRecord,
    )
    from core.errors import ErrorContext, ErrorType
    from core.payload_limits import (
        ACTIVITY_INPUT_LIMIT,
        RESULT_LIMIT,
        STEP_OUTPUT_DEFAULT,
        describe,
        json_size,
    )
    from worker.step_inputs import build_activity_call, definition_of, step_view
    from workflow_defs.expressions import compile_condition
    from workflow_defs.references import Resolver
    from workflow_defs.schema import ACTIVITY_STEP_TYPES, TransformStep, WorkflowDefinition
    from workflow_defs.transforms import TransformError, apply_transform
    from workflow_defs.transforms.lists import SCOPE_KEY as FILTER_SCOPE_KEY
    from workflow_defs.validation import transform_resolvable_config

# WorkflowName/WorkflowVersion are set when the run is started (core/temporal.py).
JOB_STATUS_SA = SearchAttributeKey.for_keyword("JobStatus")


def too_large(step_id: str | None, what: str, limit: int) -> ErrorContext:
    return ErrorContext.of(
        ErrorType.PAYLOAD_TOO_LARGE,
        f"{what}, over the {describe(limit)} limit",
        retryable=False,
        step_id=step_id,
        attempt=1,
        details={
            "suggestions": [
                "select the fields you need (transform pick/extract_fields) or cap the "
                "upstream answer; a step may raise max_output_bytes up to 1 MiB"
            ]
        },
    )


class StepFailed(Exception):
    def __init__(self, context: ErrorContext, *, timed_out: bool = False) -> None:
        super().__init__(context.message)
        self.context = context
        self.timed_out = timed_out


@workflow.defn(name="InterpreterWorkflow")
class InterpreterWorkflow:
    def __init__(self) -> None:
        self._progress = Progress()

    @workflow.query(name="progress")
    def progress(self) -> Progress:
        return self._progress

    @workflow.run
    async def run(self, inp: InterpreterInput) -> JobResult:
        defn = definition_of(inp.definition)
        started = workflow.now()
        deadline = started + timedelta(seconds=defn.timeout_seconds)
        info = workflow.info()
        self._progress = Progress(
            total_steps=len(defn.steps),
            status="running",
            steps={s.id: "pending" for s in defn.steps},
        )
        namespace: dict[str, Any] = {
            "input": inp.input_data,
            "steps": {},
            "context": {
                "job_id": inp.job_id,
                "workflow_name": defn.name,
                "workflow_version": defn.version,
                "started_at": started.isoformat(),
                "run_id": info.run_id,
            },
        }
        self._records: dict[str, StepRecord] = {}
        workflow.upsert_search_attributes([JOB_STATUS_SA.value_set("running")])
        running_mirror = effects.start_mirror(inp, defn, "running", started_at=started.isoformat())

        status = "completed"
        error: ErrorContext | None = None
        output: Any = None
        try:
            last_output: Any = None
            for step in defn.steps:
                record = await self._run_step(step, defn, inp, namespace, deadline)
                if record.status != "skipped":
                    last_output = record.output
            if defn.output is not None:
                resolver = Resolver(namespace)
                output = resolver.resolve(defn.output)
            else:
                output = last_output
        except StepFailed as failed:
            status = "timed_out" if failed.timed_out else "failed"
            error = failed.context
        except asyncio.CancelledError:
            status = "cancelled"
            error = ErrorContext.of(ErrorType.CANCELLED, "job was cancelled", retryable=False)
        records = self._collect(defn, self._records)

        finished = workflow.now()
        metadata = JobMetadata(
            duration_ms=int((finished - started).total_seconds() * 1000),
            total_tokens=sum(r.tokens for r in records.values()),
            total_cost_usd=round(sum(r.cost_usd for r in records.values()), 6),
            definition_hash=inp.definition.content_hash,
            steps=list(records.values()),
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
        workflow.set_current_details(self._details())
        workflow.upsert_search_attributes([JOB_STATUS_SA.value_set(status)])
        if running_mirror is not None:
            try:
                await running_mirror[0]
            except ActivityError:
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

    async def _run_step(
        self,
        step: Any,
        defn: WorkflowDefinition,
        inp: InterpreterInput,
        namespace: dict[str, Any],
        deadline: datetime,
    ) -> StepRecord:
        now = workflow.now()
        record = StepRecord(id=step.id, type=step.type, started_at=now.isoformat())
        self._records[step.id] = record
        resolver = Resolver(namespace)
        self._progress.current_step = step.id
        self._progress.current_step_name = step.display_name or step.id
        self._progress.steps[step.id] = "running"
        workflow.set_current_details(self._details())
        content: Any = None
        try:
            if step.when is not None and not compile_condition(step.when).evaluate(resolver.lookup):
                record.status = "skipped"
            elif step.id in inp.options.reuse_steps:
                record.status = "completed"
                record.output = inp.options.reuse_steps[step.id]
                record.warnings.append("output reused from an earlier run")
            elif isinstance(step, TransformStep):
                record.attempts = 1
                record.output = self._bounded(step, self._transform(step, namespace, resolver))
                record.status = "completed"
            elif step.type in ACTIVITY_STEP_TYPES:
                result = await self._activity(step, inp, resolver, deadline, now)
                record.attempts = getattr(result, "attempt", 1)
                record.output = self._bounded(
                    step, result.model_dump(mode="json", exclude={"attempt", "warnings"})
                )
                record.status = "completed"
                usage = getattr(result, "usage", None)
                record.tokens = usage.total_tokens if usage is not None else 0
                record.cost_usd = getattr(result, "cost_usd", 0.0) or 0.0
                record.warnings.extend(getattr(result, "warnings", None) or [])
                content = getattr(result, "content", None)
        except StepFailed as failed:
            record.status = "failed"
            record.error = failed.context.model_dump(mode="json")
            record.attempts = failed.context.attempt or record.attempts or 1
            mode = defn.step_error_mode(step)
            if failed.timed_out or mode != "continue":
                self._finish_step(record, step, namespace, resolver, content, now)
                raise
            record.output = step.default
        self._finish_step(record, step, namespace, resolver, content, now)
        if step.type == "llm" and record.status == "completed" and inp.labels.debug_mode:
            # Only runs asked for debug_mode send these, so older histories replay unchanged.
            await effects.start_llm_step_webhook(inp, defn, record)
        return record

    def _finish_step(
        self,
        record: StepRecord,
        step: Any,
        namespace: dict[str, Any],
        resolver: Resolver,
        content: Any,
        started: datetime,
    ) -> None:
        record.duration_ms = int((workflow.now() - started).total_seconds() * 1000)
        record.warnings.extend(resolver.warnings)
        self._progress.steps[step.id] = record.status
        self._progress.completed_steps += 1
        if content is None and isinstance(record.output, dict):
            content = record.output.get("content", record.output)
        elif content is None:
            content = record.output
        namespace["steps"][step.id] = step_view(
            record.output, record.status, record.error, step.outputs, content
        )

    def _transform(self, step: TransformStep, namespace: dict[str, Any], resolver: Resolver) -> Any:
        cfg = step.config
        config = dict(cfg.config)
        config.update(resolver.resolve(transform_resolvable_config(cfg.config)))
        if "source" in cfg.config:
            data = config["source"]
        elif cfg.input is not None:
            data = resolver.resolve(cfg.input)
        else:
            data = namespace
        if cfg.operation == "filter":
            config[FILTER_SCOPE_KEY] = namespace
        try:
            return apply_transform(cfg.operation, data, config)
        except TransformError as exc:
            raise StepFailed(
                ErrorContext.of(
                    ErrorType.TRANSFORM_ERROR,
                    str(exc),
                    retryable=False,
                    step_id=step.id,
                    attempt=1,
                    details={"operation": cfg.operation, "config": {"field": exc.field}},
                )
            ) from None

    async def _activity(
        self,
        step: Any,
        inp: InterpreterInput,
        resolver: Resolver,
        deadline: datetime,
        now: datetime,
    ) -> Any:
        remaining = (deadline - now).total_seconds()
        if remaining <= 0:
            raise StepFailed(self._timeout_context(step.id), timed_out=True)
        call = build_activity_call(
            step, job_id=inp.job_id, snapshot=inp.definition, resolver=resolver
        )
        size = json_size(call.arg)
        if size > ACTIVITY_INPUT_LIMIT:
            raise StepFailed(
                too_large(step.id, f"the step's input is {describe(size)}", ACTIVITY_INPUT_LIMIT)
            )
        try:
            return await workflow.execute_activity(
                call.name,
                call.arg,
                result_type=call.result_type,
                start_to_close_timeout=call.start_to_close,
                schedule_to_close_timeout=timedelta(seconds=remaining),
                heartbeat_timeout=call.heartbeat_timeout,
                retry_policy=call.retry_policy,
                summary=f"{step.id}: {step.display_name or step.type}",
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            context = ErrorContext.from_failure(exc, step_id=step.id)
            if context.type == ErrorType.CANCELLED:
                # The activity was cancelled because the job was: end as cancelled, not failed.
                raise asyncio.CancelledError() from None
            if context.type == ErrorType.TIMEOUT and workflow.now() >= deadline:
                raise StepFailed(self._timeout_context(step.id), timed_out=True) from None
            raise StepFailed(context) from None

    def _bounded(self, step: Any, output: Any) -> Any:
        """The step's output, or PAYLOAD_TOO_LARGE when it would not fit Temporal's limits."""
        limit = step.max_output_bytes or STEP_OUTPUT_DEFAULT
        size = json_size(output)
        if size > limit:
            raise StepFailed(too_large(step.id, f"the step's output is {describe(size)}", limit))
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

    def _timeout_context(self, step_id: str) -> ErrorContext:
        return ErrorContext.of(
            ErrorType.WORKFLOW_TIMEOUT,
            "the workflow's timeout_seconds elapsed",
            retryable=False,
            step_id=step_id,
            details={"suggestions": ["raise the definition's timeout_seconds"]},
        )

    def _collect(
        self, defn: WorkflowDefinition, records: dict[str, StepRecord]
    ) -> dict[str, StepRecord]:
        # Steps never reached still get a record, so the result lists every step of the definition.
        ordered: dict[str, StepRecord] = {}
        for step in defn.steps:
            ordered[step.id] = records.get(step.id) or StepRecord(id=step.id, type=step.type)
        return ordered

    def _details(self) -> str:
        p = self._progress
        lines = [f"**{p.status}** — {p.completed_steps}/{p.total_steps} steps"]
        if p.current_step:
            lines.append(f"current step: `{p.current_step}`")
        lines.extend(f"- `{sid}`: {st}" for sid, st in p.steps.items())
        return "\n".join(lines)
