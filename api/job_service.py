"""What the jobs endpoints do: submit a job, and read it back from the mirror and Temporal."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import QueryRejectCondition
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api import key_budgets
from api.auth import Caller
from api.fork_view import fork_info
from api.pagination import BadCursor, decode_cursor, encode_cursor
from api.reconciler import failing_task_attempts, reconcile_row
from api.schemas import JobAccepted, JobCreate, JobView, TemporalRef
from api.temporal_link import TemporalLink, TemporalUnavailable
from core import db, json_safety, tracing
from core.budget import BudgetSpec
from core.contracts import (
    INTERPRETER_WORKFLOW,
    TERMINAL_STATUSES,
    InterpreterInput,
    JobLabels,
    JobResult,
    JobStatus,
    Progress,
    RunOptions,
    WebhookTarget,
)
from core.errors import ErrorContext
from core.models import Job, JobSecret, utcnow
from core.redaction import redact
from core.secret_box import SecretBox
from core.settings import Settings
from core.ssrf import BlockedAddressError, check_url
from core.temporal import start_job
from workflow_defs.catalog import Catalog
from workflow_defs.inputs import validate_input

log = logging.getLogger(__name__)

TEMPORAL_STATUS: dict[WorkflowExecutionStatus, JobStatus] = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "failed",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "running",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
}


class NotFound(LookupError):
    pass


class ServiceUnavailable(RuntimeError):
    pass


class Conflict(RuntimeError):
    pass


class IdempotencyMismatch(ValueError):
    """Same Idempotency-Key, different request body."""


class UnstorableValues(ValueError):
    """Values no JSON store takes back (NaN, a lone surrogate, NUL): the client's to fix."""

    def __init__(self, problems: list[tuple[list[str | int], str]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in problems))
        self.problems = problems


class BadField(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class Submitted:
    accepted: JobAccepted
    replayed: bool = False  # an earlier request with the same Idempotency-Key made this job


# Namespace of job ids derived from (caller, Idempotency-Key): same pair, same job id.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f0b7d0e-3c4a-4f7e-9a51-1b2c3d4e5f60")


def job_id_for(principal: str, idempotency_key: str) -> str:
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{principal}\n{idempotency_key}"))


def request_hash(body: JobCreate) -> str:
    # The webhook secret stays out: a stored hash of it would allow guessing it offline.
    fields = body.model_dump(mode="json", exclude={"webhook_secret"})
    if fields.get("budget") is None:
        fields.pop("budget", None)  # hashes from before submits had a budget stay the same
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


async def submit_job(
    body: JobCreate,
    *,
    settings: Settings,
    engine: Engine,
    catalog: Catalog,
    temporal: TemporalLink,
    principal: str = "anonymous",
    idempotency_key: str | None = None,
) -> Submitted:
    """Validate, record and start a job. `principal` names the caller: it owns the job and
    scopes its Idempotency-Keys."""
    unstorable = json_safety.problems(body.model_dump())
    if unstorable:
        raise UnstorableValues(unstorable)
    body_hash = request_hash(body)
    job_id = job_id_for(principal, idempotency_key) if idempotency_key else str(uuid.uuid4())
    if idempotency_key:
        earlier = await _earlier_submission(engine, job_id, body_hash)
        if earlier is not None:
            return Submitted(earlier, replayed=True)

    loaded = catalog.definitions.get(body.workflow_name, body.workflow_version)
    if loaded is None:
        raise NotFound(catalog.definitions.not_found(body.workflow_name, body.workflow_version))
    input_data = validate_input(loaded.definition, body.input_data)  # InputError → 422
    check_lowers(loaded.definition.budget, body.budget)
    try:
        await key_budgets.check(principal, settings=settings, engine=engine, temporal=temporal)
    except key_budgets.BudgetUnknown as exc:
        raise ServiceUnavailable(str(exc)) from None
    webhook = _webhook_target(body, settings, job_id)

    now = utcnow()
    row = Job(
        job_id=job_id,
        workflow_name=loaded.name,
        workflow_version=loaded.version,
        status="queued",
        input_data=redact(input_data, truncate=False),
        webhook_url=body.webhook_url,
        idempotency_key=f"{principal}:{idempotency_key}"[:300] if idempotency_key else None,
        request_hash=body_hash,
        owner=principal,
        user_id=body.user_id,
        username=body.username,
        action=body.action,
        priority=body.priority,
        debug_mode=body.debug_mode,
        created_at=now,
        updated_at=now,
    )
    secret = (
        JobSecret(
            job_id=job_id,
            webhook_secret=SecretBox.from_settings(settings).seal(body.webhook_secret),
        )
        if body.webhook_secret
        else None
    )
    try:
        await asyncio.to_thread(db.insert_job, engine, row, secret)
        inserted = True
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the insert.
        earlier = await _earlier_submission(engine, job_id, body_hash)
        if earlier is None:
            raise ServiceUnavailable("could not record the job; retry the request") from None
        return Submitted(earlier, replayed=True)
    except SQLAlchemyError as exc:
        if secret is not None:
            # The per-job secret has nowhere safe to live but the database: don't accept.
            raise ServiceUnavailable(
                "database unavailable; a job with webhook_secret can't be accepted"
            ) from exc
        # The interpreter's mirror activity creates the row once the database is back; the job
        # itself is safe in Temporal, so accepting it is still correct.
        inserted = False
        log.warning("job %s: mirror insert failed, continuing: %s", job_id, type(exc).__name__)

    inp = InterpreterInput(
        job_id=job_id,
        definition=catalog.snapshot(loaded),
        input_data=input_data,
        webhook=webhook,
        options=RunOptions(budget=body.budget),
        labels=JobLabels(
            user_id=body.user_id,
            username=body.username,
            action=body.action,
            priority=body.priority,
            debug_mode=body.debug_mode,
        ),
    )
    try:
        client = await temporal.client()
        handle = await start_job(
            client,
            settings,
            inp,
            reuse_existing=bool(idempotency_key),
            memo={"request_hash": body_hash, "owner": principal, **tracing.job_memo()},
        )
    except WorkflowAlreadyStartedError:
        # Idempotent retry of a job whose run already closed (its row was never written).
        return Submitted(await _from_temporal(temporal, job_id, body_hash), replayed=True)
    except Exception as exc:
        if inserted:
            await asyncio.to_thread(db.delete_job, engine, job_id)
        raise ServiceUnavailable(
            f"could not start the job in Temporal: {type(exc).__name__}"
        ) from exc
    if idempotency_key and not inserted:
        await _check_memo(handle, body_hash)
    return Submitted(
        JobAccepted(
            job_id=job_id,
            status="queued",
            workflow_name=loaded.name,
            workflow_version=loaded.version,
            created_at=now,
        )
    )


def check_lowers(defined: BudgetSpec | None, submitted: BudgetSpec | None) -> None:
    if defined is None or submitted is None:
        return
    raised = defined.raised_by(submitted)
    if raised is not None:
        raise BadField(
            f"budget.{raised}",
            f"a submit may only lower the definition's budget: its {raised} is "
            f"{getattr(defined, raised)}, the submit asks for {getattr(submitted, raised)}",
        )


def _webhook_target(body: JobCreate, settings: Settings, job_id: str) -> WebhookTarget | None:
    if body.webhook_url is None:
        if body.webhook_secret is not None:
            raise BadField("webhook_secret", "webhook_secret given without webhook_url")
        return None
    try:
        check_url(body.webhook_url, allow_private=settings.webhook_allow_private)
    except BlockedAddressError as exc:
        raise BadField("webhook_url", str(exc)) from None
    if body.webhook_secret:
        return WebhookTarget(url=body.webhook_url, secret_ref=f"job:{job_id}")
    if settings.llm_webhook_secret:
        return WebhookTarget(url=body.webhook_url, secret_ref="env")
    raise BadField(
        "webhook_secret", "required with webhook_url unless LLM_WEBHOOK_SECRET is configured"
    )


async def _earlier_submission(engine: Engine, job_id: str, body_hash: str) -> JobAccepted | None:
    try:
        row = await asyncio.to_thread(db.get_job, engine, job_id)
    except SQLAlchemyError:
        return None  # decided against Temporal's copy (memo) after the start attempt
    if row is None:
        return None
    if row.request_hash and row.request_hash != body_hash:
        raise IdempotencyMismatch("Idempotency-Key was already used with a different request body")
    return JobAccepted(
        job_id=row.job_id,
        status=row.status,  # type: ignore[arg-type]
        workflow_name=row.workflow_name,
        workflow_version=row.workflow_version,
        created_at=db.as_utc(row.created_at) or utcnow(),
    )


async def _check_memo(handle: WorkflowHandle[Any, Any], body_hash: str) -> None:
    desc = await handle.describe()
    memo = await desc.memo()
    if memo.get("request_hash") not in (None, body_hash):
        raise IdempotencyMismatch("Idempotency-Key was already used with a different request body")


async def _from_temporal(temporal: TemporalLink, job_id: str, body_hash: str) -> JobAccepted:
    client = await temporal.client()
    handle = client.get_workflow_handle(job_id)
    await _check_memo(handle, body_hash)
    desc = await handle.describe()
    sa = desc.typed_search_attributes
    return JobAccepted(
        job_id=job_id,
        status=TEMPORAL_STATUS.get(desc.status, "running") if desc.status else "running",
        workflow_name=_sa(sa, "WorkflowName") or "",
        workflow_version=_sa(sa, "WorkflowVersion") or "",
        created_at=desc.start_time,
    )


async def describe_job(job_id: str, temporal: TemporalLink) -> tuple[Any, Mapping[str, Any]]:
    """(description, memo) of the job's run; NotFound for ids that are not jobs (internal
    workflows such as a job's webhook delivery are not), ServiceUnavailable without Temporal."""
    try:
        client = await temporal.client()
        desc = await client.get_workflow_handle(job_id).describe()
        memo = await desc.memo()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"job {job_id!r} not found") from None
        raise ServiceUnavailable(f"Temporal is unavailable: {exc.status.name}") from None
    except TemporalUnavailable as exc:
        raise ServiceUnavailable(str(exc)) from None
    if desc.workflow_type != INTERPRETER_WORKFLOW:
        raise NotFound(f"job {job_id!r} not found")
    return desc, memo


async def _open_job(
    job_id: str, temporal: TemporalLink, caller: Caller, why: str = ""
) -> JobStatus:
    """The status of a job the caller may act on that has not finished; NotFound / Conflict."""
    desc, memo = await describe_job(job_id, temporal)
    if not caller.owns(memo.get("owner")):
        raise NotFound(f"job {job_id!r} not found")
    status = TEMPORAL_STATUS.get(desc.status, "running") if desc.status else "running"
    if status in TERMINAL_STATUSES:
        raise Conflict(f"job {job_id!r} already {status}{why}")
    return status


async def cancel_job(job_id: str, *, temporal: TemporalLink, caller: Caller) -> JobStatus:
    """Request cancellation; the interpreter records `cancelled` when it stops."""
    status = await _open_job(job_id, temporal, caller)
    temporal.live_cache.drop(job_id)
    temporal.rows.drop(job_id)
    try:
        client = await temporal.client()
        await client.get_workflow_handle(job_id).cancel()
    except RPCError as exc:
        raise ServiceUnavailable(f"Temporal is unavailable: {exc.status.name}") from None
    return status


class Forbidden(PermissionError):
    pass


class Unprocessable(ValueError):
    def __init__(self, message: str, problems: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.problems = problems


# How long an approval or event may wait for a worker to run the update's validator.
UPDATE_RPC_TIMEOUT = timedelta(seconds=30)


async def send_update(
    job_id: str, name: str, arg: Any, *, temporal: TemporalLink, caller: Caller
) -> Any:
    """Deliver an approval (`approve`) or an event (`event`) to a waiting job; returns the
    step's output. Refusals: Conflict (nothing waiting, job over), Forbidden (not an approver),
    Unprocessable (breaks the step's schema)."""
    await _open_job(job_id, temporal, caller, "; nothing is waiting")
    temporal.live_cache.drop(job_id)
    temporal.rows.drop(job_id)
    try:
        client = await temporal.client()
        handle = client.get_workflow_handle(job_id)
        return await handle.execute_update(name, arg, rpc_timeout=UPDATE_RPC_TIMEOUT)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = getattr(cause, "message", None) or str(cause)
        kind = getattr(cause, "type", None)
        if kind == "FORBIDDEN":
            raise Forbidden(message) from None
        if kind == "INVALID_DECISION":
            details = list(getattr(cause, "details", None) or [])
            raise Unprocessable(message, details[0] if details else []) from None
        raise Conflict(message) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise Conflict(f"job {job_id!r} is no longer running") from None
        raise ServiceUnavailable(f"Temporal did not take the update: {exc.status.name}") from None


@dataclass
class BulkOutcome:
    acted_on: list[str]
    cancelled: list[str]
    not_found: list[str]


async def delete_jobs(
    job_ids: list[str], *, engine: Engine, temporal: TemporalLink, caller: Caller
) -> BulkOutcome:
    """Cancel the caller's queued/running jobs among `job_ids` and take its finished ones off
    the job list. Temporal keeps every history; GET /jobs/{id} still answers for them."""
    ids = list(dict.fromkeys(job_ids))
    rows = await asyncio.to_thread(db.get_jobs, engine, ids)
    outcome = BulkOutcome([], [], [])
    hidden: list[str] = []
    for job_id in ids:
        row = rows.get(job_id)
        if row is not None and not caller.owns(row.owner):
            row = None
        if row is not None and row.status in TERMINAL_STATUSES:
            hidden.append(job_id)
            outcome.acted_on.append(job_id)
            continue
        # Queued or running in the mirror, or not mirrored at all: Temporal decides.
        try:
            await cancel_job(job_id, temporal=temporal, caller=caller)
            outcome.cancelled.append(job_id)
            outcome.acted_on.append(job_id)
        except NotFound:
            outcome.not_found.append(job_id)
        except Conflict:
            # Finished in Temporal before the mirror caught up.
            if row is not None:
                hidden.append(job_id)
                outcome.acted_on.append(job_id)
            else:
                outcome.not_found.append(job_id)
    if hidden:
        await asyncio.to_thread(db.hide_jobs, engine, hidden)
    return outcome


# `status` filter values of GET /jobs: the job statuses, plus the earlier service's `all` and
# `running` (= queued or running).
STATUS_FILTERS: dict[str, tuple[str, ...] | None] = {
    "all": None,
    "queued": ("queued",),
    "running": ("queued", "running"),
    "completed": ("completed",),
    "failed": ("failed",),
    "cancelled": ("cancelled",),
    "timed_out": ("timed_out",),
}
WINDOWS = {"today": None, "7 days": 7, "30 days": 30}


def window_start(limit_results: str, now: datetime) -> tuple[datetime | None, int | None]:
    """`limit_results` of the earlier admin page: `Today`, `7 Days`, `30 Days` (or `N days`)
    bound created_at; a bare number caps how many rows come back. → (since, max rows)."""
    text = " ".join(limit_results.lower().split())
    if text == "today":
        return now.replace(hour=0, minute=0, second=0, microsecond=0), None
    days, _, unit = text.partition(" ")
    if days.isdigit() and unit in ("day", "days") and 0 < int(days) <= 3660:
        return now - timedelta(days=int(days)), None
    if text.isdigit() and int(text) > 0:
        return None, int(text)
    raise BadField("limit_results", "use Today, 7 Days, 30 Days, '<N> days' or a number of results")


async def list_job_rows(
    engine: Engine,
    where: db.JobFilter,
    *,
    limit: int,
    cursor: str | None,
    offset: int = 0,
) -> tuple[list[Job], str | None, int]:
    """(rows, next_cursor, total matching)."""
    try:
        before = decode_cursor(cursor, str) if cursor else None
    except BadCursor as exc:
        raise BadField("cursor", str(exc)) from None
    rows = await asyncio.to_thread(
        db.list_jobs, engine, where, limit=limit + 1, before=before, offset=offset
    )
    total = await asyncio.to_thread(db.count_jobs, engine, where)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor(db.as_utc(last.created_at) or utcnow(), last.job_id)
    return rows, next_cursor, total


async def get_job_view(
    job_id: str,
    *,
    settings: Settings,
    engine: Engine,
    temporal: TemporalLink,
    caller: Caller | None = None,
) -> JobView:
    """The job as the API shows it; NotFound also when `caller` may not see it (a job of
    another key is indistinguishable from no job)."""
    view = await _job_view(job_id, settings, engine, temporal, caller)
    if tracing.enabled():  # the trace id lives in the run's memo, read once per gateway

        async def memo() -> Mapping[str, Any]:
            return (await describe_job(job_id, temporal))[1]

        view.trace_id = await tracing.job_trace_id(job_id, memo)
    return with_flat_fields(view)


async def _job_view(
    job_id: str,
    settings: Settings,
    engine: Engine,
    temporal: TemporalLink,
    caller: Caller | None,
) -> JobView:
    # A polled unfinished job's row, refreshed in the background (at most a second old);
    # else read now.
    row: Job | None = temporal.rows.get(job_id)
    if row is None:
        read_started = time.monotonic()
        try:
            row = await asyncio.to_thread(db.get_job, engine, job_id)
        except SQLAlchemyError:
            row = None  # fall back to Temporal alone while the database is down
        if row is not None:
            temporal.rows.put(row, read_started)
    if row is not None and caller is not None and not caller.owns(row.owner):
        raise NotFound(f"job {job_id!r} not found")
    if row is not None and row.status in TERMINAL_STATUSES:
        return _view_from_row(row, settings, progress=None)
    live = await _live_state(job_id, temporal, row)
    if row is None and (live is None or (caller is not None and not caller.owns(live["owner"]))):
        raise NotFound(f"job {job_id!r} not found")
    if row is None:
        # No mirror row (the database was down at submit, or is now): Temporal alone.
        assert live is not None
        view = JobView(
            job_id=job_id,
            status=live["status"],
            workflow_name=live["workflow_name"],
            workflow_version=live["workflow_version"],
            progress=live.get("progress"),
            workflow_task_attempts=live.get("workflow_task_attempts"),
            created_at=live.get("start_time"),
            temporal=TemporalRef(
                workflow_id=job_id,
                run_id=live["run_id"],
                ui_url=settings.job_ui_url(job_id, live["run_id"]),
            ),
        )
        if live["status"] in TERMINAL_STATUSES:
            await _fill_from_result(view, temporal)
        return view
    if live is not None and live["status"] in TERMINAL_STATUSES:
        # Closed in Temporal but not yet in the mirror (the final mirror write is in flight, or
        # the run was terminated/timed out from outside): reconcile now rather than show a
        # status without its output or error.
        try:
            await reconcile_row(engine, temporal, row)
            row = await asyncio.to_thread(db.get_job, engine, job_id) or row
            temporal.rows.drop(job_id)
        except Exception as exc:
            log.warning("job %s: reconcile on read failed: %s", job_id, type(exc).__name__)
        if row.status in TERMINAL_STATUSES:
            return _view_from_row(row, settings, progress=None)
    view = _view_from_row(row, settings, progress=live.get("progress") if live else None)
    if live is not None:
        view.workflow_task_attempts = live.get("workflow_task_attempts")
        # The mirror lags Temporal by one activity; show the fresher status.
        if row.status == "queued" or live["status"] in TERMINAL_STATUSES:
            view.status = live["status"]
        view.temporal.run_id = live["run_id"]
    return view


async def _fill_from_result(view: JobView, temporal: TemporalLink) -> None:
    client = await temporal.client()
    handle = client.get_workflow_handle(view.job_id, result_type=JobResult)
    try:
        result = await handle.result()
    except WorkflowFailureError as exc:
        view.error = ErrorContext.from_failure(exc.cause).model_dump(mode="json")
        return
    except Exception as exc:
        log.warning(
            "job %s: could not read its result from Temporal: %s", view.job_id, type(exc).__name__
        )
        return
    view.status = result.status
    view.output = result.output
    view.error = result.error
    view.metadata = result.metadata.model_dump(mode="json")


def with_flat_fields(view: JobView) -> JobView:
    """Fill the flat fields the earlier service's clients poll from the structured ones."""
    if view.error:
        view.error_message = str(view.error.get("message") or view.error.get("type") or "failed")
    metadata = view.metadata or {}
    if view.duration_ms is None and metadata.get("duration_ms") is not None:
        view.duration_ms = int(metadata["duration_ms"])
    progress = view.progress or {}
    view.waiting = progress.get("waiting") or []
    view.current_step_id = progress.get("current_step")
    view.current_step_name = progress.get("current_step_name") or view.current_step_id
    if view.status in TERMINAL_STATUSES:
        view.progress_percentage = 100
    elif progress.get("total_steps"):
        done, total = progress.get("completed_steps", 0), progress["total_steps"]
        view.progress_percentage = min(99, int(100 * done / total))
    else:
        view.progress_percentage = 0
    return view


def as_earlier_client_sees_it(view: Any) -> Any:
    """The earlier service had no `timed_out`: its clients poll until completed, failed or
    cancelled, so a timeout reads as `failed` with a message that says so. Takes a JobView or
    a JobSummary (both have `status` and `error_message`)."""
    if view.status == "timed_out":
        view.status = "failed"
        reason = view.error_message or "the workflow's timeout_seconds elapsed"
        view.error_message = f"job timed out: {reason}"
    return view


def _view_from_row(row: Job, settings: Settings, *, progress: dict[str, Any] | None) -> JobView:
    started, completed = db.as_utc(row.started_at), db.as_utc(row.completed_at)
    return JobView(
        job_id=row.job_id,
        status=row.status,  # type: ignore[arg-type]
        workflow_name=row.workflow_name,
        workflow_version=row.workflow_version,
        output=row.output,
        error=row.error,
        metadata=row.job_metadata,
        progress=progress,
        created_at=db.as_utc(row.created_at),
        started_at=started,
        completed_at=completed,
        temporal=TemporalRef(
            workflow_id=row.job_id,
            run_id=row.run_id,
            ui_url=settings.job_ui_url(row.job_id, row.run_id),
        ),
        user_id=row.user_id,
        username=row.username,
        action=row.action,
        priority=row.priority,
        duration_ms=duration_ms(row),
        parent_job_id=row.parent_job_id,
        fork=fork_info(row),
    )


def duration_ms(row: Job) -> int | None:
    meta = row.job_metadata or {}
    if isinstance(meta.get("duration_ms"), int):
        return int(meta["duration_ms"])
    started, completed = db.as_utc(row.started_at), db.as_utc(row.completed_at)
    if started and completed:
        return int((completed - started).total_seconds() * 1000)
    return None


async def _live_state(
    job_id: str, temporal: TemporalLink, row: Job | None = None
) -> dict[str, Any] | None:
    """A running job's state in Temporal (status, run, progress), or None when it has none.

    Clients poll running jobs every fraction of a second and each read costs the server a
    describe and a query; within LIVE_TTL_SECONDS (longer when many jobs are polled at once,
    see TemporalLink.live_cache) a gateway answers from what it last read
    (a finished job is served from its mirror row, which never waits on this)."""
    cached = temporal.live_cache.get(job_id)
    if cached is not None:
        return cached
    state = None
    if row is not None and row.status == "running":
        # The mirror already says running: the progress query alone tells the rest.
        state = await _progress_of_running(job_id, temporal, row)
    if state is None:
        state = await _read_live_state(job_id, temporal)
    if state is not None and state["status"] not in TERMINAL_STATUSES:
        temporal.live_cache.put(job_id, state)
    return state


async def _progress_of_running(
    job_id: str, temporal: TemporalLink, row: Job
) -> dict[str, Any] | None:
    """Live state of a job the mirror shows running, from one query; None to ask in full
    (the run ended, or the query failed)."""
    try:
        client = await temporal.client()
        # NOT_OPEN: a run that closed (terminated, timed out from outside) is refused rather
        # than replayed to its last state, and the full read below reconciles it.
        progress = await client.get_workflow_handle(job_id).query(
            "progress",
            result_type=Progress,
            rpc_timeout=timedelta(seconds=2),
            reject_condition=QueryRejectCondition.NOT_OPEN,
        )
    except Exception:
        return None
    if progress.status in TERMINAL_STATUSES:
        return None
    return {
        "status": "running",
        "run_id": row.run_id,
        "start_time": db.as_utc(row.created_at),
        "workflow_name": row.workflow_name,
        "workflow_version": row.workflow_version,
        "owner": row.owner,
        "workflow_task_attempts": None,
        "progress": progress.model_dump(),
    }


async def _read_live_state(job_id: str, temporal: TemporalLink) -> dict[str, Any] | None:
    try:
        desc, memo = await describe_job(job_id, temporal)
        client = await temporal.client()
        handle = client.get_workflow_handle(job_id)
    except NotFound:
        return None
    except ServiceUnavailable as exc:
        log.warning("Temporal unavailable while reading %s: %s", job_id, exc)
        return None
    status = TEMPORAL_STATUS.get(desc.status, "running") if desc.status else "running"
    sa = desc.typed_search_attributes
    state: dict[str, Any] = {
        "status": status,
        "run_id": desc.run_id,
        "start_time": desc.start_time,
        "workflow_name": _sa(sa, "WorkflowName") or "",
        "workflow_version": _sa(sa, "WorkflowVersion") or "",
        "owner": memo.get("owner"),
        "workflow_task_attempts": failing_task_attempts(desc),
    }
    if status == "running":
        # The interpreter moves JobStatus from "queued" to "running" in its first task, so a
        # run no worker has picked up yet still reads as queued (and isn't queried).
        if _sa(sa, "JobStatus") == "queued":
            state["status"] = "queued"
            return state
        try:
            progress = await handle.query(
                "progress", result_type=Progress, rpc_timeout=timedelta(seconds=2)
            )
            state["progress"] = progress.model_dump()
        except Exception:
            state["progress"] = None
    return state


def _sa(attrs: Any, name: str) -> str | None:
    for pair in attrs:
        if pair.key.name == name:
            return str(pair.value)
    return None
