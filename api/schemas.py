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
