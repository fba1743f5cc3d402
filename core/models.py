"""SQLModel tables of the mirror. Table classes only; API schemas live in api/schemas.py.

A change here needs its revision in core/migrations/versions (autogenerate writes a draft; see
core/migrations/alembic.ini): tests/test_migrations.py fails while the two disagree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

# jsonb on Postgres: indexable and queryable with ->> (a plain json column also keeps text
# jsonb refuses, such as \u0000, and one such row breaks ->> over the whole table).
JSON_DOC = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_workflow_created", "workflow_name", "created_at"),
        Index("ix_jobs_user_created", "user_id", "created_at"),
        Index("ix_jobs_owner_created", "owner", "created_at"),
        # The unfiltered list: its order and keyset cursor, and the `since` bound.
        Index("ix_jobs_created", "created_at", "job_id"),
        # GET /jobs/{id}/forks: a run's forks, oldest first.
        Index("ix_jobs_fork_of_created", "fork_of", "created_at"),
    )

    job_id: str = Field(primary_key=True, max_length=200)
    workflow_name: str = Field(max_length=200)
    workflow_version: str = Field(max_length=50)
    status: str = Field(default="queued", max_length=20)
    input_data: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON_DOC))
    output: Any = Field(default=None, sa_column=Column(JSON_DOC))
    error: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON_DOC))
    # "metadata" is reserved by SQLAlchemy's declarative base, hence the attribute name.
    job_metadata: dict[str, Any] | None = Field(
        default=None, sa_column=Column("metadata", JSON_DOC)
    )
    run_id: str | None = Field(default=None, max_length=100)
    idempotency_key: str | None = Field(default=None, max_length=300, unique=True)
    request_hash: str | None = Field(default=None, max_length=100)
    webhook_url: str | None = Field(default=None, max_length=2000)
    # Columns from here to deleted_at came after the first release: adopting a database made
    # before migrations adds them to an existing table, so each is nullable.
    # Who may see the job: the API key's name ("anonymous" without API_KEYS, "trigger:<source>",
    # "cli"). Rows from before ownership was recorded have none and are shown to admins only.
    owner: str | None = Field(default=None, max_length=200)
    # Labels the earlier service's clients send and read back (list filters, callbacks).
    user_id: str | None = Field(default=None, max_length=200)
    username: str | None = Field(default=None, max_length=200)
    action: str | None = Field(default=None, max_length=200)
    priority: int | None = None
    debug_mode: bool | None = None
    # The job whose sub_workflow step started this one.
    parent_job_id: str | None = Field(default=None, max_length=200)
    # POST /jobs/{id}/fork: the run this one was forked from, where, why, and per step what
    # the fork reused, overrode or ran again (`{"definition": …, "steps": {id: {action, why}}}`).
    fork_of: str | None = Field(default=None, max_length=200)
    forked_from_step: str | None = Field(default=None, max_length=500)
    fork_reason: str | None = Field(default=None, sa_column=Column(Text))
    fork_plan: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON_DOC))
    # Since when the job waits for an approval or an event; null when it does not.
    waiting_since: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # Removed from the job list by DELETE /jobs/bulk; the row (and Temporal's history) stays.
    deleted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    started_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    completed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class JobSecret(SQLModel, table=True):
    """A job's own webhook secret, kept out of the jobs table, the API and Temporal history.
    The delivery activity reads it by job id (`secret_ref="job:<id>"`)."""

    __tablename__ = "job_secrets"

    job_id: str = Field(primary_key=True, max_length=200)
    # Sealed (fernet:…), so longer than the secret; unbounded text.
    webhook_secret: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class WebhookDelivery(SQLModel, table=True):
    """One row per delivery attempt of a completion webhook."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_job", "job_id", "attempt"),)

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(max_length=200, index=True)
    job_id: str = Field(max_length=200)
    event: str = Field(max_length=50)
    url: str = Field(max_length=2000)
    attempt: int
    status_code: int | None = None
    outcome: str = Field(max_length=20)  # delivered | retrying | failed
    error: str | None = Field(default=None, max_length=1000)
    duration_ms: int = 0
    response_snippet: str | None = Field(default=None, max_length=600)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class Alert(SQLModel, table=True):
    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_level_created", "level", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    level: str = Field(max_length=10)  # INFO | WARNING | ERROR | CRITICAL
    source: str = Field(max_length=100)
    message: str = Field(max_length=2000)
    job_id: str | None = Field(default=None, max_length=200)
    details: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON_DOC))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
