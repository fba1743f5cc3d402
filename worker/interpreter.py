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
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from core.contracts import (
        MIRROR_WORKFLOW,
        WEBHOOK_DELIVERY_WORKFLOW,
        AlertInput,
        InterpreterInput,
        JobMetadata,
        JobResult,
        MirrorUpdate,
        Progress,
        StepRecord,
        WebhookDeliveryInput,
    )
    from core.errors import ErrorContext, ErrorType
    from worker.step_inputs import build_activity_call, definition_of, step_view
    from workflow_defs.expressions import compile_condition
    from workflow_defs.references import Resolver
    from workflow_defs.schema import ACTIVITY_STEP_TYPES, TransformStep, WorkflowDefinition
    from workflow_defs.transforms import TransformError, apply_transform
    from workflow_defs.transforms.lists import SCOPE_KEY as FILTER_SCOPE_KEY
    from workflow_defs.validation import transform_resolvable_config

WORKFLOW_NAME_SA = SearchAttributeKey.for_keyword("WorkflowName")
WORKFLOW_VERSION_SA = SearchAttributeKey.for_keyword("WorkflowVersion")
JOB_STATUS_SA = SearchAttributeKey.for_keyword("JobStatus")

# The mirror is retried until the database is back: losing a job's result is not an option.
MIRROR_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
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
        running_mirror = self._mirror(inp, defn, "running", started_at=started.isoformat())

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
            steps=records,
            metadata=metadata,
        )
        self._progress.status = result.status
        self._progress.current_step = None
        workflow.set_current_details(self._details())
        workflow.upsert_search_attributes([JOB_STATUS_SA.value_set(status)])
        if running_mirror is not None:
            try:
                await running_mirror[0]
            except ActivityError:
                pass  # the final write below carries everything the "running" row would
        final_mirror = self._mirror(
            inp,
            defn,
            status,
            started_at=started.isoformat(),
            completed_at=finished.isoformat(),
            result=result,
        )
        if final_mirror is not None:
            handle, update = final_mirror
            try:
                await handle
            except ActivityError:
                # The database stayed down past the budget: finish the job anyway and leave a
                # detached workflow retrying the write until the database is back.
                await workflow.start_child_workflow(
                    MIRROR_WORKFLOW,
                    update,
                    id=f"{inp.job_id}:mirror:{workflow.info().run_id}",
                    parent_close_policy=ParentClosePolicy.ABANDON,
                    static_summary=f"mirror {status} (database was unavailable)",
                )
        if inp.webhook is not None:
            await self._start_webhook(inp, defn, result)
        # Added after histories were recorded: failed runs now raise an alert first.
        if error is not None and status != "cancelled" and workflow.patched("alert-on-job-failure"):
            await self._alert_failure(inp, defn, status, error)

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
                record.output = self._transform(step, namespace, resolver)
                record.status = "completed"
                record.attempts = 1
            elif step.type in ACTIVITY_STEP_TYPES:
                result = await self._activity(step, inp, resolver, deadline, now)
                record.output = result.model_dump(mode="json", exclude={"attempt", "warnings"})
                record.attempts = getattr(result, "attempt", 1)
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

    async def _start_webhook(
        self, inp: InterpreterInput, defn: WorkflowDefinition, result: JobResult
    ) -> None:
        assert inp.webhook is not None
        completed = result.status == "completed"
        event = "workflow.completed" if completed else "workflow.failed"
        meta = result.metadata
        payload: dict[str, Any] = {
            "event": event,
            "job_id": inp.job_id,
            "status": result.status,
            "workflow_name": defn.name,
            "workflow_version": defn.version,
            "metadata": {
                "duration_ms": meta.duration_ms,
                "total_tokens": meta.total_tokens,
                "total_cost_usd": meta.total_cost_usd,
                "steps": [
                    {
                        "id": r.id,
                        "status": r.status,
                        "attempts": r.attempts,
                        "duration_ms": r.duration_ms,
                    }
                    for r in meta.steps
                ],
            },
        }
        payload["output" if completed else "error"] = result.output if completed else result.error
        run_id = workflow.info().run_id
        # One delivery per run: a reset run reports its own outcome; retries of this delivery
        # (and worker crashes) keep the same id, which receivers dedupe on.
        await workflow.start_child_workflow(
            WEBHOOK_DELIVERY_WORKFLOW,
            WebhookDeliveryInput(
                job_id=inp.job_id,
                url=inp.webhook.url,
                secret_ref=inp.webhook.secret_ref,
                event=event,
                delivery_id=f"whd_{workflow.uuid4().hex}",
                payload=payload,
            ),
            id=f"{inp.job_id}:webhook:{run_id}",
            parent_close_policy=ParentClosePolicy.ABANDON,
            static_summary=f"{event} → webhook",
        )

    async def _alert_failure(
        self, inp: InterpreterInput, defn: WorkflowDefinition, status: str, error: ErrorContext
    ) -> None:
        # A broken deployment (config/system) pages someone; a bad input or upstream refusal is
        # recorded for the dashboard only.
        serious = error.category in ("CONFIG_ERROR", "SYSTEM_ERROR")
        try:
            await self._raise_alert(inp, defn, status, error, serious)
        except ActivityError:
            pass  # the job's own outcome matters more than its alert; the mirror has the error

    async def _raise_alert(
        self,
        inp: InterpreterInput,
        defn: WorkflowDefinition,
        status: str,
        error: ErrorContext,
        serious: bool,
    ) -> None:
        await workflow.execute_activity(
            "raise_alert",
            AlertInput(
                level="ERROR" if serious else "WARNING",
                source="job",
                message=f"{defn.name} {defn.version} job {inp.job_id} {status} at step "
                f"{error.step_id or '-'}: {error.message}",
                job_id=inp.job_id,
                details={"error": error.model_dump(mode="json")},
            ),
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(seconds=inp.options.mirror_budget_seconds),
            retry_policy=MIRROR_RETRY,
            summary="alert: job failed",
        )

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

    def _mirror(
        self,
        inp: InterpreterInput,
        defn: WorkflowDefinition,
        status: str,
        *,
        started_at: str | None = None,
        completed_at: str | None = None,
        result: JobResult | None = None,
    ) -> Any:
        if not inp.options.mirror:
            return None
        update = MirrorUpdate(
            job_id=inp.job_id,
            run_id=workflow.info().run_id,
            workflow_name=defn.name,
            workflow_version=defn.version,
            status=status,  # type: ignore[arg-type]
            started_at=started_at,
            completed_at=completed_at,
            output=result.output if result else None,
            error=result.error if result else None,
            metadata=result.metadata.model_dump(mode="json") if result else None,
        )
        handle = workflow.start_activity(
            "mirror_job",
            update,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(seconds=inp.options.mirror_budget_seconds),
            retry_policy=MIRROR_RETRY,
            summary=f"mirror: {status}",
        )
        return handle, update
