"""Routes of the earlier service, kept for its existing clients.

`POST /workflow` is `POST /jobs` that ignores (and logs) unknown fields; `GET /status/{id}` is
`GET /jobs/{id}` in that service's vocabulary. Both share the jobs routes' code.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from api.auth import Principal
from api.deps import CatalogDep, EngineDep, SettingsDep, TemporalDep
from api.job_service import as_earlier_client_sees_it
from api.routers.jobs import SUBMIT_RESPONSES, IdempotencyKey, JobViewDep, submit
from api.schemas import (
    EarlierJobCreate,
    JobAccepted,
    JobCreate,
    LegacyJobAccepted,
    LegacyResult,
    LegacyStatusView,
)
from core.contracts import JobMetadata, llm_calls

router = APIRouter(tags=["compatibility"])
log = logging.getLogger("llmflow.api")

# The earlier service's word for running (a timeout reads as failed: as_earlier_client_sees_it).
EARLIER_STATUS = {"running": "processing"}


async def submit_earlier(
    body: EarlierJobCreate,
    request: Request,
    response: Response,
    settings: SettingsDep,
    engine: EngineDep,
    catalog: CatalogDep,
    temporal: TemporalDep,
    caller: Principal,
    idempotency_key: IdempotencyKey = None,
) -> JobAccepted:
    if body.model_extra:
        # Names only: the values may be anything, secrets included.
        log.info("POST /workflow: ignoring unknown fields %s", ", ".join(sorted(body.model_extra)))
    known = JobCreate.model_validate(body.model_dump(exclude=set(body.model_extra or {})))
    return await submit(
        known, request, response, settings, engine, catalog, temporal, caller, idempotency_key
    )


@router.post(
    "/workflow",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=LegacyJobAccepted,
    responses=SUBMIT_RESPONSES,
)
async def create_job_legacy(
    accepted: Annotated[JobAccepted, Depends(submit_earlier)], request: Request
) -> LegacyJobAccepted:
    """`POST /api/v1/jobs` for the earlier service's clients: unknown fields are ignored
    rather than rejected, and the answer adds `status_url`."""
    status_url = str(request.url_for("read_status_legacy", job_id=accepted.job_id))
    return LegacyJobAccepted(**accepted.model_dump(), status_url=status_url)


@router.get(
    "/status/{job_id}",
    response_model=LegacyStatusView,
    responses={404: {"description": "Unknown job"}},
)
async def read_status_legacy(view: JobViewDep) -> LegacyStatusView:
    """`GET /api/v1/jobs/{job_id}` in the earlier service's vocabulary: `processing` while
    running (with `current_step`, `steps_completed`, `total_steps`), `failed` for a timeout,
    and `result` = {output, metadata (with `llm_calls`), steps_executed (step ids)}."""
    view = as_earlier_client_sees_it(view)
    legacy = LegacyStatusView(
        **view.model_dump(exclude={"status"}), status=EARLIER_STATUS.get(view.status, view.status)
    )
    if view.status == "running":
        progress = view.progress or {}
        legacy.current_step = progress.get("current_step")
        legacy.steps_completed = progress.get("completed_steps", 0)
        legacy.total_steps = progress.get("total_steps")
    metadata = dict(view.metadata or {})
    steps = JobMetadata.model_validate({"steps": metadata.get("steps") or []}).steps
    if view.status == "completed":
        metadata["llm_calls"] = llm_calls(steps)
    legacy.result = LegacyResult(
        output=view.output,
        metadata=metadata or None,
        steps_executed=[s.id for s in steps if s.status in ("completed", "failed")],
    )
    return legacy
