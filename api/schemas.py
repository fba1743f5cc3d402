"""Request and response bodies of the REST API (kept apart from the SQLModel tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.budget import BudgetSpec
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
    user_id: str | None = Field(
        default=None,
        max_length=200,
        description="Your user's id: stored on the job, filterable in GET /jobs, echoed in callbacks.",
    )
    priority: int | None = Field(
        default=None,
        ge=0,
        le=10,
        description=(
            "0-10, higher is more urgent. Maps onto Temporal task priority: 0-3 normal, "
            "4-7 high, 8-10 urgent; it orders work only while the task queue is backlogged."
        ),
    )
    username: str | None = Field(default=None, max_length=200, description="Stored and listed.")
    action: str | None = Field(default=None, max_length=200, description="Stored and listed.")
    debug_mode: bool = Field(
        default=False,
        description="Also send an `llm.step.completed` callback for every finished LLM step.",
    )
    budget: BudgetSpec | None = Field(
        default=None,
        description=(
            "Caps this job's llm spend (max_cost_usd, max_tokens). It may lower the "
            "definition's `budget`, never raise it (422 naming the field)."
        ),
    )


class EarlierJobCreate(JobCreate):
    """`POST /api/v1/workflow` (the earlier service's route): unknown fields are ignored
    (and logged) instead of rejected, as that service did."""

    model_config = ConfigDict(extra="allow")


class JobAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": "c992be29-936c-45f1-852a-53a7ccc7b631",
                    "status": "queued",
                    "workflow_name": "quickstart",
                    "workflow_version": "1.0.0",
                    "created_at": "2026-11-22T07:41:48.122899Z",
                }
            ]
        }
    )

    job_id: str
    status: JobStatus
    workflow_name: str
    workflow_version: str
    created_at: datetime


class TemporalRef(BaseModel):
    workflow_id: str
    run_id: str | None = None
    ui_url: str


class ForkStep(BaseModel):
    action: Literal["reused", "rerun", "overridden"]
    why: str


class ForkInfo(BaseModel):
    """How a fork relates to the run it was forked from (POST /jobs/{id}/fork)."""

    parent: str = Field(description="The job it was forked from.")
    from_step: str | None = None
    reason: str | None = None
    definition_version: str | None = Field(
        default=None, description="The version of the definition the fork runs."
    )
    steps: dict[str, ForkStep] = Field(
        default_factory=dict,
        description="Per top-level step: reused (the parent's output), overridden "
        "(output_overrides) or rerun, and why.",
    )


class JobView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": "c992be29-936c-45f1-852a-53a7ccc7b631",
                    "status": "completed",
                    "workflow_name": "quickstart",
                    "workflow_version": "1.0.0",
                    "output": {"title": "Durable execution", "points": ["…"], "summary": "…"},
                    "error": None,
                    "metadata": {
                        "duration_ms": 1840,
                        "total_tokens": 412,
                        "total_cost_usd": 0.00021,
                        "steps": [
                            {
                                "id": "explain",
                                "type": "llm",
                                "status": "completed",
                                "attempts": 1,
                                "duration_ms": 1790,
                            }
                        ],
                    },
                    "progress": None,
                    "created_at": "2026-11-22T07:41:48.122899Z",
                    "started_at": "2026-11-22T07:41:48.146278Z",
                    "completed_at": "2026-11-22T07:41:49.986000Z",
                    "temporal": {
                        "workflow_id": "c992be29-936c-45f1-852a-53a7ccc7b631",
                        "run_id": "01a2023a-d50e-7c22-8afe-c0d0d397796d",
                        "ui_url": "http://localhost:8233/namespaces/default/workflows/c992be29-…",
                    },
                },
                {
                    "job_id": "5d0c…",
                    "status": "failed",
                    "workflow_name": "quickstart",
                    "workflow_version": "1.0.0",
                    "error": {
                        "type": "AUTH_ERROR",
                        "category": "CONFIG_ERROR",
                        "message": "llm openrouter returned HTTP 401: Invalid API key: [REDACTED]",
                        "retryable": False,
                        "step_id": "explain",
                        "attempt": 1,
                        "details": {
                            "provider": "openrouter",
                            "status_code": 401,
                            "suggestions": ["check the API key configured for this service"],
                        },
                    },
                    "temporal": {"workflow_id": "5d0c…", "run_id": "…", "ui_url": "…"},
                },
            ]
        }
    )

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
    waiting: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Steps waiting for a person or an event: "
        "[{path, kind (approval|event), since, timeout_at, prompt, event, approvers}]",
    )
    parent_job_id: str | None = Field(
        default=None, description="For a job a sub_workflow step started: the parent job."
    )
    fork: ForkInfo | None = Field(
        default=None, description="For a fork (POST /jobs/{id}/fork): its parent and plan."
    )
    workflow_task_attempts: int | None = Field(
        default=None,
        description=(
            "Set while Temporal keeps retrying the run's workflow task (a bug or a payload "
            "Temporal refuses): the job is stuck until an operator fixes and resets it."
        ),
    )
    trace_id: str | None = Field(
        default=None,
        description="The job's OpenTelemetry trace id (32 hex digits) when the gateway traces.",
    )
    # Flat fields the earlier service's clients poll.
    error_message: str | None = Field(default=None, description="`error.message`, as text.")
    current_step_id: str | None = None
    current_step_name: str | None = None
    progress_percentage: int | None = Field(
        default=None, description="Finished steps / all steps, 0-100 (100 once finished)."
    )
    user_id: str | None = None
    username: str | None = None
    action: str | None = None
    priority: int | None = None
    duration_ms: int | None = None


class ComponentHealth(BaseModel):
    status: str  # ok | error | disabled
    detail: str | None = None


class ServiceHealth(BaseModel):
    status: Literal["healthy", "unhealthy", "disabled"]
    detail: str | None = None


class HealthView(BaseModel):
    """`status` and `services` in the shape the earlier service's clients read; `components`
    as the first releases of this gateway answered."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "healthy",
                    "services": {
                        "database": {"status": "healthy"},
                        "temporal": {"status": "healthy", "detail": "localhost:7233"},
                        "redis": {"status": "disabled"},
                    },
                    "components": {
                        "database": {"status": "ok"},
                        "temporal": {"status": "ok", "detail": "localhost:7233"},
                        "redis": {"status": "disabled"},
                    },
                }
            ]
        }
    )

    # healthy: all up; degraded: an optional service (Redis) is down, jobs still run;
    # unhealthy: the database or Temporal is down (503).
    status: Literal["healthy", "degraded", "unhealthy"]
    services: dict[str, ServiceHealth]
    components: dict[str, ComponentHealth]


class JobSummary(BaseModel):
    job_id: str
    status: JobStatus
    workflow_name: str
    workflow_version: str
    error_type: str | None = None
    error_message: str | None = None
    priority: int | None = None
    user_id: str | None = None
    username: str | None = None
    action: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    waiting_since: datetime | None = None


class JobList(BaseModel):
    items: list[JobSummary]
    next_cursor: str | None = Field(
        default=None,
        description="Pass as `cursor` to get the next (older) page; null on the last page.",
    )
    jobs: list[JobSummary] = Field(
        default_factory=list, description="The same rows as `items` (the earlier service's name)."
    )
    total: int = Field(default=0, description="How many jobs match the filters, over all pages.")
    limit: int = 50
    offset: int = 0


class ApprovalBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"approved": True, "comment": "looks right", "data": {}}]},
    )

    approved: bool
    comment: str | None = Field(default=None, max_length=2000)
    data: dict[str, Any] = Field(
        default_factory=dict, description="Extra fields, checked against the step's `schema`."
    )


class BulkDelete(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"job_ids": ["c992be29-…", "5d0c…"]}]}
    )

    job_ids: list[str] = Field(min_length=1, max_length=100)


class BulkDeleted(BaseModel):
    deleted_count: int = Field(description="Jobs acted on: cancelled or removed from the list.")
    job_ids: list[str] = Field(description="Those jobs' ids.")
    cancelled: list[str] = Field(description="Queued or running jobs that were cancelled.")
    not_found: list[str] = Field(description="Ids with no job this key may see.")


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
    steps_executed: list[str] = Field(
        default_factory=list, description="Ids of the steps that ran, in order."
    )


class LegacyStatusView(JobView):
    """`GET /api/v1/status/{job_id}` (the earlier service's route): the job in that service's
    vocabulary (`processing` while running, `failed` for a timeout) plus `result`."""

    status: str  # type: ignore[assignment]
    current_step: str | None = None
    steps_completed: int | None = None
    total_steps: int | None = None
    result: LegacyResult | None = None


class RerunRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"from_step": "generate_contacts"}]}
    )

    from_step: str | None = Field(
        default=None,
        description="Resume here: earlier steps reuse the outputs the first run recorded. Omit to run everything again.",
    )


class RerunAccepted(JobAccepted):
    rerun_of: str
    reused_steps: list[str]
