"""/api/v1/jobs/{id}/fork, /forks and /compare/{other}: edit a finished run and see what
the edit changed."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request, Response, status

from api import fork_service, job_service
from api.auth import Principal
from api.deps import CatalogDep, EngineDep, SettingsDep, TemporalDep
from api.errors import ApiError
from api.fork_plan import PlanError
from api.fork_schemas import ForkAccepted, ForkList, ForkRequest, ForkSummary, RunComparison
from api.fork_view import fork_info
from api.metrics import record_job_submitted
from api.routers.jobs import IdempotencyKey, _summary, unprocessable
from api.run_compare import compare_runs
from core import db
from core.models import Job

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post(
    "/{job_id}/fork",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ForkAccepted,
    responses={
        200: {"model": ForkAccepted, "description": "Idempotent replay"},
        404: {"description": "Unknown job"},
        409: {"description": "The job is still running"},
        422: {
            "description": "Unknown step (`from_step`, `step_overrides`, `output_overrides`), "
            "an input_patch the inputs refuse, an invalid overridden definition or an unknown "
            "definition version; `detail[].loc` names the field"
        },
        503: {"description": "Temporal unreachable"},
    },
)
async def fork_job(
    job_id: str,
    body: ForkRequest,
    request: Request,
    response: Response,
    settings: SettingsDep,
    engine: EngineDep,
    catalog: CatalogDep,
    temporal: TemporalDep,
    caller: Principal,
    idempotency_key: IdempotencyKey = None,
) -> ForkAccepted:
    """A new job from a finished one, with edits: an input patch, another definition version,
    step overrides and given step outputs. Steps before `from_step` reuse the parent's outputs
    unless what they read changed; `fork.steps` says per step what the fork does and why."""
    try:
        accepted, replayed = await fork_service.fork_job(
            job_id,
            body,
            settings=settings,
            engine=engine,
            catalog=catalog,
            temporal=temporal,
            caller=caller,
            idempotency_key=idempotency_key,
        )
    except job_service.NotFound as exc:
        raise ApiError(status.HTTP_404_NOT_FOUND, "JobNotFound", str(exc)) from None
    except job_service.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except PlanError as exc:
        raise unprocessable(["body", *exc.loc], str(exc)) from None
    except job_service.ServiceUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    if replayed:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    else:
        record_job_submitted(
            getattr(request.app.state, "metrics", None), accepted.workflow_name, kind="fork"
        )
    return accepted


async def _own_row(job_id: str, engine: EngineDep, caller: Principal) -> Job:
    row = await asyncio.to_thread(db.get_job, engine, job_id)
    if row is None or not caller.owns(row.owner):
        raise ApiError(status.HTTP_404_NOT_FOUND, "JobNotFound", f"job {job_id!r} not found")
    return row


@router.get(
    "/{job_id}/forks", response_model=ForkList, responses={404: {"description": "Unknown job"}}
)
async def list_forks(job_id: str, engine: EngineDep, caller: Principal) -> ForkList:
    """The jobs forked from this one (that this key may see), oldest first."""
    await _own_row(job_id, engine, caller)
    rows = await asyncio.to_thread(db.list_forks, engine, job_id, caller.owner_filter)
    return ForkList(
        items=[
            ForkSummary(**_summary(row, caller).model_dump(), fork=fork_info(row)) for row in rows
        ]
    )


@router.get(
    "/{job_id}/compare/{other_id}",
    response_model=RunComparison,
    responses={404: {"description": "Either job unknown"}},
)
async def compare_jobs(
    job_id: str, other_id: str, engine: EngineDep, caller: Principal
) -> RunComparison:
    """Two runs step by step (by path): status, tokens, cost and duration on each side, and
    whether the step's output changed, from the mirror's step records."""
    job = await _own_row(job_id, engine, caller)
    other = await _own_row(other_id, engine, caller)
    return compare_runs(job, other)
