"""/api/v1/jobs: submit jobs and read them back."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from api import job_service
from api.deps import CatalogDep, EngineDep, SettingsDep, TemporalDep
from api.schemas import JobAccepted, JobCreate, JobView
from workflow_defs.inputs import InputError

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses={
        404: {"description": "Unknown workflow or version"},
        422: {"description": "Invalid input_data; `detail[].loc` names the field"},
        503: {"description": "Temporal unreachable; nothing was started"},
    },
)
async def create_job(
    body: JobCreate,
    settings: SettingsDep,
    engine: EngineDep,
    catalog: CatalogDep,
    temporal: TemporalDep,
) -> JobAccepted:
    try:
        return await job_service.submit_job(
            body, settings=settings, engine=engine, catalog=catalog, temporal=temporal
        )
    except job_service.NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except InputError as exc:
        detail = [
            {"loc": ["body", "input_data", *field.split(".")], "msg": msg, "type": "value_error"}
            for field, msg in exc.errors
        ]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from None
    except job_service.ServiceUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None


@router.get("/{job_id}", response_model=JobView, responses={404: {"description": "Unknown job"}})
async def read_job(
    job_id: str, settings: SettingsDep, engine: EngineDep, temporal: TemporalDep
) -> JobView:
    try:
        return await job_service.get_job_view(
            job_id, settings=settings, engine=engine, temporal=temporal
        )
    except job_service.NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
