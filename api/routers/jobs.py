"""/api/v1/jobs: submit, read, list and cancel jobs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Body,
    Depends,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    status,
)
from fastapi.responses import StreamingResponse

from api import job_events, job_service, key_budgets, rerun_service
from api.auth import Caller, Principal
from api.deps import CatalogDep, EngineDep, SettingsDep, TemporalDep
from api.errors import ApiError
from api.metrics import record_decision, record_job_submitted
from api.schemas import (
    ApprovalBody,
    BulkDelete,
    BulkDeleted,
    CancelAccepted,
    JobAccepted,
    JobCreate,
    JobList,
    JobSummary,
    JobView,
    RerunAccepted,
    RerunRequest,
)
from core import db
from core.contracts import ApprovalDecision, EventDelivery
from core.models import Job, utcnow
from workflow_defs.inputs import InputError
from workflow_defs.tree import streamed_ids

router = APIRouter(prefix="/jobs", tags=["jobs"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description=(
            "Retry-safe submits: the same key with the same body returns the same job "
            "(200, header `Idempotent-Replayed: true`), also after it finished; the same key "
            "with a different body is rejected with 422. Keys are scoped per API key."
        ),
    ),
]

SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": JobAccepted,
        "description": "Idempotent replay: the job this Idempotency-Key already made",
    },
    400: {"description": "Malformed JSON"},
    401: {"description": "Missing or invalid API key (when API_KEYS is set)"},
    404: {"description": "Unknown workflow or version"},
    413: {"description": "Body over MAX_REQUEST_BYTES"},
    422: {
        "description": "Invalid body or input_data (`detail[].loc` names the field), or Idempotency-Key reused with another body"
    },
    429: {
        "description": "The API key's daily budget (API_KEY_BUDGETS) is spent: "
        "`spent_usd` and `budget_usd` say by how much"
    },
    503: {
        "description": "Temporal (or, for jobs with webhook_secret, the database) unreachable; nothing was started"
    },
}


def unprocessable(loc: list[str], message: str, kind: str = "value_error") -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, [{"loc": loc, "msg": message, "type": kind}]
    )


async def submit(
    body: JobCreate,
    request: Request,
    response: Response,
    settings: SettingsDep,
    engine: EngineDep,
    catalog: CatalogDep,
    temporal: TemporalDep,
    caller: Principal,
    idempotency_key: IdempotencyKey = None,
) -> JobAccepted:
    """The submit itself, as a dependency shared by POST /jobs and the earlier service's
    POST /workflow (FastAPI documents its body and header on both routes)."""
    try:
        result = await job_service.submit_job(
            body,
            settings=settings,
            engine=engine,
            catalog=catalog,
            temporal=temporal,
            principal=caller.name,
            idempotency_key=idempotency_key,
        )
    except job_service.NotFound as exc:
        raise ApiError(status.HTTP_404_NOT_FOUND, "WorkflowNotFound", str(exc)) from None
    except InputError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [
                {
                    "loc": ["body", "input_data", *field.split(".")],
                    "msg": msg,
                    "type": "value_error",
                }
                for field, msg in exc.errors
            ],
        ) from None
    except job_service.BadField as exc:
        raise unprocessable(["body", *exc.field.split(".")], str(exc)) from None
    except key_budgets.DailyBudgetReached as exc:
        raise ApiError(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "DailyBudgetExceeded",
            str(exc),
            extra={"spent_usd": exc.spent, "budget_usd": exc.budget},
        ) from None
    except job_service.UnstorableValues as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [
                {"loc": ["body", *path], "msg": msg, "type": "value_error"}
                for path, msg in exc.problems
            ],
        ) from None
    except job_service.IdempotencyMismatch as exc:
        raise unprocessable(
            ["header", "Idempotency-Key"], str(exc), "idempotency_mismatch"
        ) from None
    except job_service.ServiceUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    if result.replayed:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    else:
        record_job_submitted(
            getattr(request.app.state, "metrics", None), result.accepted.workflow_name
        )
    return result.accepted


SubmittedJob = Annotated[JobAccepted, Depends(submit)]


@router.post(
    "", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted, responses=SUBMIT_RESPONSES
)
async def create_job(accepted: SubmittedJob) -> JobAccepted:
    """Start a job: 202 with its id. Poll `GET /jobs/{job_id}` or pass `webhook_url` to be told."""
    return accepted


@router.get("", response_model=JobList)
async def list_jobs(
    engine: EngineDep,
    caller: Principal,
    status_: Annotated[
        str | None,
        Query(
            alias="status",
            pattern="^(all|queued|running|completed|failed|cancelled|timed_out)$",
            description="A job status; `running` also matches queued jobs; `all` (default) any.",
        ),
    ] = None,
    waiting: Annotated[
        bool, Query(description="Only jobs waiting for an approval or an event.")
    ] = False,
    workflow_name: Annotated[str | None, Query(max_length=200)] = None,
    user_id: Annotated[str | None, Query(max_length=200)] = None,
    limit_results: Annotated[
        str | None,
        Query(
            max_length=20,
            description="`Today`, `7 Days`, `30 Days` (or `<N> days`): created in that window; "
            "a bare number caps how many jobs come back.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> JobList:
    """Jobs from the mirror, newest first: page with `next_cursor` (keyset) or `offset`.
    A key sees its own jobs; an admin key (API_ADMINS) sees every job."""
    since = None
    try:
        if limit_results:
            since, cap = job_service.window_start(limit_results, utcnow())
            limit = min(limit, cap) if cap else limit
        where = db.JobFilter(
            statuses=job_service.STATUS_FILTERS[status_ or "all"],
            waiting=waiting,
            workflow_name=workflow_name,
            user_id=user_id,
            owner=caller.owner_filter,
            since=since,
        )
        rows, next_cursor, total = await job_service.list_job_rows(
            engine, where, limit=limit, cursor=cursor, offset=offset
        )
    except job_service.BadField as exc:
        raise unprocessable(["query", exc.field], str(exc)) from None
    items = [_summary(r, caller) for r in rows]
    return JobList(
        items=items, next_cursor=next_cursor, jobs=items, total=total, limit=limit, offset=offset
    )


def _summary(row: Job, caller: Caller) -> JobSummary:
    summary = JobSummary(
        job_id=row.job_id,
        status=row.status,  # type: ignore[arg-type]
        workflow_name=row.workflow_name,
        workflow_version=row.workflow_version,
        error_type=(row.error or {}).get("type"),
        error_message=(row.error or {}).get("message"),
        priority=row.priority,
        user_id=row.user_id,
        username=row.username,
        action=row.action,
        created_at=db.as_utc(row.created_at),
        started_at=db.as_utc(row.started_at),
        completed_at=db.as_utc(row.completed_at),
        duration_ms=job_service.duration_ms(row),
        waiting_since=db.as_utc(row.waiting_since),
    )
    if caller.earlier_client:
        return job_service.as_earlier_client_sees_it(summary)  # type: ignore[no-any-return]
    return summary


@router.delete(
    "/bulk",
    response_model=BulkDeleted,
    responses={422: {"description": "No ids, or more than 100"}},
)
async def delete_jobs(
    body: BulkDelete, engine: EngineDep, temporal: TemporalDep, caller: Principal
) -> BulkDeleted:
    """Cancel each queued or running job and take finished ones off the job list (their
    Temporal history stays, and GET /jobs/{id} still answers). At most 100 ids."""
    try:
        outcome = await job_service.delete_jobs(
            body.job_ids, engine=engine, temporal=temporal, caller=caller
        )
    except job_service.ServiceUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return BulkDeleted(
        deleted_count=len(outcome.acted_on),
        job_ids=outcome.acted_on,
        cancelled=outcome.cancelled,
        not_found=outcome.not_found,
    )


async def load_job_view(
    job_id: str, settings: SettingsDep, engine: EngineDep, temporal: TemporalDep, caller: Principal
) -> JobView:
    try:
        view = await job_service.get_job_view(
            job_id, settings=settings, engine=engine, temporal=temporal, caller=caller
        )
    except job_service.NotFound as exc:
        raise ApiError(status.HTTP_404_NOT_FOUND, "JobNotFound", str(exc)) from None
    if caller.earlier_client:
        return job_service.as_earlier_client_sees_it(view)  # type: ignore[no-any-return]
    return view


# The job named by the path's {job_id}, or 404; shared by every route that shows a job.
JobViewDep = Annotated[JobView, Depends(load_job_view)]


@router.get("/{job_id}", response_model=JobView, responses={404: {"description": "Unknown job"}})
async def read_job(view: JobViewDep) -> JobView:
    """The job's status, output or error, per-step records, live progress and Temporal links."""
    return view


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CancelAccepted,
    responses={
        404: {"description": "Unknown job"},
        409: {"description": "Job already finished"},
        503: {"description": "Temporal unreachable"},
    },
)
async def cancel_job(job_id: str, temporal: TemporalDep, caller: Principal) -> CancelAccepted:
    """Ask Temporal to cancel the run; the job ends `cancelled` once the interpreter stops."""
    try:
        current = await job_service.cancel_job(job_id, temporal=temporal, caller=caller)
    except job_service.NotFound as exc:
        raise ApiError(status.HTTP_404_NOT_FOUND, "JobNotFound", str(exc)) from None
    except job_service.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except job_service.ServiceUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return CancelAccepted(job_id=job_id, status=current)


@router.post(
    "/{job_id}/rerun",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RerunAccepted,
    responses={
        404: {"description": "Unknown job"},
        409: {"description": "The job is still running"},
        422: {"description": "`from_step` unknown, or a step before it has no recorded output"},
    },
)
async def rerun_job(
    job_id: str,
    request: Request,
    settings: SettingsDep,
    engine: EngineDep,
    temporal: TemporalDep,
    caller: Principal,
    response: Response,
    body: RerunRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> RerunAccepted:
    """Start a new job with the original run's input and definition snapshot. The same
    Idempotency-Key (for the same job and `from_step`) returns the same rerun."""
    from_step = body.from_step if body else None
    try:
        accepted, reused, replayed = await rerun_service.rerun_job(
            job_id,
            from_step,
            settings=settings,
            engine=engine,
            temporal=temporal,
            caller=caller,
            idempotency_key=idempotency_key,
        )
    except job_service.NotFound as exc:
        raise ApiError(status.HTTP_404_NOT_FOUND, "JobNotFound", str(exc)) from None
    except job_service.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except job_service.BadField as exc:
        raise unprocessable(["body", exc.field], str(exc)) from None
    except job_service.ServiceUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    if replayed:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    else:
        record_job_submitted(
            getattr(request.app.state, "metrics", None), accepted.workflow_name, kind="rerun"
        )
    return RerunAccepted(**accepted.model_dump(), rerun_of=job_id, reused_steps=reused)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-Sent Events: `status`, `step` (started/finished), `llm.delta` (streamed text), `waiting`, then `job` (final) and the stream ends",
        },
        404: {"description": "Unknown job"},
    },
)
async def job_events_stream(
    request: Request,
    first: JobViewDep,
    settings: SettingsDep,
    engine: EngineDep,
    temporal: TemporalDep,
    catalog: CatalogDep,
) -> StreamingResponse:
    """Follow a job live. Each event's `data` is JSON; the last one (`job`) is the full job view.
    A streamed `llm` step's text arrives as `llm.delta` events `{path, text, attempt, call}`
    before the step's `finished`; the step's text is the deltas of its last (attempt, call)."""
    loaded = catalog.definitions.get(first.workflow_name, first.workflow_version)
    stream = job_events.follow(
        first,
        settings=settings,
        engine=engine,
        temporal=temporal,
        redis=request.app.state.redis,
        streamed=streamed_ids(loaded.definition.steps) if loaded else frozenset(),
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


UPDATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "The step names `approvers` and this key is not one of them"},
    404: {"description": "Unknown job"},
    409: {"description": "Nothing waits for it (not reached yet, already decided, job over)"},
    422: {"description": "The body breaks the step's `schema` (`detail[].loc` names the field)"},
    503: {"description": "Temporal (or a worker) did not take it; retry"},
}


async def _send_update(
    job_id: str, name: str, arg: Any, temporal: TemporalDep, caller: Caller
) -> Any:
    try:
        return await job_service.send_update(job_id, name, arg, temporal=temporal, caller=caller)
    except job_service.NotFound as exc:
        raise ApiError(status.HTTP_404_NOT_FOUND, "JobNotFound", str(exc)) from None
    except job_service.Forbidden as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    except job_service.Conflict as exc:
        raise ApiError(status.HTTP_409_CONFLICT, "NotWaiting", str(exc)) from None
    except job_service.Unprocessable as exc:
        raise ApiError(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "ValidationError",
            [{**p, "loc": ["body", *p.get("loc", [])]} for p in exc.problems] or str(exc),
        ) from None
    except job_service.ServiceUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None


@router.post("/{job_id}/approvals/{step_path}", responses=UPDATE_RESPONSES)
async def decide_approval(
    job_id: str,
    step_path: str,
    body: ApprovalBody,
    request: Request,
    temporal: TemporalDep,
    caller: Principal,
) -> dict[str, Any]:
    """Approve or reject the `approval` step at `step_path` (its path in the step tree, e.g.
    `review` or `route.confirm`; a loop's `#` is sent as `%23`). 200 with the step's output
    `{approved, decided_by, comment, data, decided_at}`; `decided_by` is this key's name."""
    decision = ApprovalDecision(
        path=step_path,
        approved=body.approved,
        comment=body.comment,
        data=body.data,
        decided_by=caller.name,
    )
    result: dict[str, Any] = await _send_update(job_id, "approve", decision, temporal, caller)
    outcome = "approved" if body.approved else "rejected"
    record_decision(getattr(request.app.state, "metrics", None), outcome)
    return result


@router.post("/{job_id}/events/{event}", responses=UPDATE_RESPONSES)
async def send_event(
    job_id: str,
    event: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")],
    request: Request,
    temporal: TemporalDep,
    caller: Principal,
    payload: Annotated[Any, Body()] = None,
) -> Any:
    """Deliver event `event` to the job's `wait_for_event` step waiting for it; the JSON body
    is the event's payload (checked against the step's `schema`). 200 with the step's output."""
    delivery = EventDelivery(event=event, payload=payload, sent_by=caller.name)
    output = await _send_update(job_id, "event", delivery, temporal, caller)
    record_decision(getattr(request.app.state, "metrics", None), "event")
    return output
