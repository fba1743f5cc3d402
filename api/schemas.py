"""Request and response bodies of the REST API (kept apart from the SQLModel tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.contracts import JobStatus


class JobCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"workflow_name": "quickstart", "input_data": {"topic": "durable execution"}}
            ]
        },
    )

    workflow_name: str = Field(min_length=1, max_length=200)
    workflow_version: str | None = Field(default=None, max_length=50)
    input_data: dict[str, Any] = Field(default_factory=dict)
    webhook_url: str | None = Field(default=None, max_length=2000)
    webhook_secret: str | None = Field(default=None, max_length=500)


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    workflow_name: str
    workflow_version: str
    created_at: datetime


class TemporalRef(BaseModel):
    workflow_id: str
    run_id: str | None = None
    ui_url: str


class JobView(BaseModel):
    job_id: str
    status: JobStatus
    workflow_name: str
    workflow_version: str
    output: Any = None
    error: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    temporal: TemporalRef


class ComponentHealth(BaseModel):
    status: str  # ok | error | disabled
    detail: str | None = None


class HealthView(BaseModel):
    status: str  # ok | degraded
    components: dict[str, ComponentHealth]


class JobSummary(BaseModel):
    job_id: str
    status: JobStatus
    workflow_name: str
    workflow_version: str
    error_type: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


class JobList(BaseModel):
    items: list[JobSummary]
    next_cursor: str | None = Field(
        default=None,
        description="Pass as `cursor` to get the next (older) page; null on the last page.",
    )


class CancelAccepted(BaseModel):
    job_id: str
    status: JobStatus = Field(
        description="Status when the cancel was requested; poll for `cancelled`."
    )
    cancel_requested: bool = True


class LegacyJobAccepted(JobAccepted):
    """`POST /api/v1/workflow` (the earlier service's route): adds `status_url`."""

    status_url: str


class LegacyResult(BaseModel):
    output: Any = None
    metadata: dict[str, Any] | None = None
    steps_executed: int = 0


class LegacyStatusView(JobView):
    """`GET /api/v1/status/{job_id}` (the earlier service's route): adds `result`."""

    result: LegacyResult | None = None
