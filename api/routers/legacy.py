"""Routes of the earlier service, for its existing clients (DESIGN §5 aliases)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from api.routers.jobs import SUBMIT_RESPONSES, JobViewDep, SubmittedJob
from api.schemas import LegacyJobAccepted, LegacyResult, LegacyStatusView

router = APIRouter(tags=["compatibility"])


@router.post(
    "/workflow",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=LegacyJobAccepted,
    responses=SUBMIT_RESPONSES,
)
async def create_job_legacy(accepted: SubmittedJob, request: Request) -> LegacyJobAccepted:
    """Same as `POST /api/v1/jobs`; the answer adds `status_url`."""
    status_url = str(request.url_for("read_status_legacy", job_id=accepted.job_id))
    return LegacyJobAccepted(**accepted.model_dump(), status_url=status_url)


@router.get(
    "/status/{job_id}",
    response_model=LegacyStatusView,
    responses={404: {"description": "Unknown job"}},
)
async def read_status_legacy(view: JobViewDep) -> LegacyStatusView:
    """Same as `GET /api/v1/jobs/{job_id}`; adds `result` = {output, metadata, steps_executed}."""
    steps = (view.metadata or {}).get("steps") or []
    result = LegacyResult(
        output=view.output,
        metadata=view.metadata,
        steps_executed=sum(1 for s in steps if s.get("status") in ("completed", "failed")),
    )
    return LegacyStatusView(**view.model_dump(), result=result)
