"""The schema of the releases before migrations.

The tables jobs, job_secrets, webhook_deliveries and alerts, their indexes and the workflow_jobs
view, as those releases' create_all made them. A database they made (no alembic_version) is
brought to this shape by core/schema_migrations.py (`adopt`: missing tables, columns and indexes
added, json turned into jsonb) and stamped with this revision, so the revisions after it run on
it as on any other.

This file is history: the tables are spelled out here, not imported from core/models.py, and a
later change of the schema is a new revision, never an edit of this one.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _timestamp(name: str, *, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


metadata = sa.MetaData()

sa.Table(
    "jobs",
    metadata,
    sa.Column("job_id", sa.String(200), primary_key=True),
    sa.Column("workflow_name", sa.String(200), nullable=False),
    sa.Column("workflow_version", sa.String(50), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("input_data", JSON_DOC),
    sa.Column("output", JSON_DOC),
    sa.Column("error", JSON_DOC),
    sa.Column("metadata", JSON_DOC),
    sa.Column("run_id", sa.String(100)),
    sa.Column("idempotency_key", sa.String(300), unique=True),
    sa.Column("request_hash", sa.String(100)),
    sa.Column("webhook_url", sa.String(2000)),
    sa.Column("owner", sa.String(200)),
    sa.Column("user_id", sa.String(200)),
    sa.Column("username", sa.String(200)),
    sa.Column("action", sa.String(200)),
    sa.Column("priority", sa.Integer),
    sa.Column("debug_mode", sa.Boolean),
    sa.Column("parent_job_id", sa.String(200)),
    _timestamp("waiting_since"),
    _timestamp("deleted_at"),
    _timestamp("created_at", nullable=False),
    _timestamp("started_at"),
    _timestamp("completed_at"),
    _timestamp("updated_at", nullable=False),
    sa.Index("ix_jobs_status_created", "status", "created_at"),
    sa.Index("ix_jobs_workflow_created", "workflow_name", "created_at"),
    sa.Index("ix_jobs_user_created", "user_id", "created_at"),
    sa.Index("ix_jobs_owner_created", "owner", "created_at"),
)

sa.Table(
    "job_secrets",
    metadata,
    sa.Column("job_id", sa.String(200), primary_key=True),
    sa.Column("webhook_secret", sa.Text, nullable=False),
    _timestamp("created_at", nullable=False),
)

sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("delivery_id", sa.String(200), nullable=False),
    sa.Column("job_id", sa.String(200), nullable=False),
    sa.Column("event", sa.String(50), nullable=False),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("error", sa.String(1000)),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("response_snippet", sa.String(600)),
    _timestamp("created_at", nullable=False),
    sa.Index("ix_webhook_deliveries_delivery_id", "delivery_id"),
    sa.Index("ix_webhook_deliveries_job", "job_id", "attempt"),
)

sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("level", sa.String(10), nullable=False),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("message", sa.String(2000), nullable=False),
    sa.Column("job_id", sa.String(200)),
    sa.Column("details", JSON_DOC),
    _timestamp("created_at", nullable=False),
    sa.Index("ix_alerts_level_created", "level", "created_at"),
)

# The earlier service's table, as a view over `jobs`: its README's monitoring queries
# (`SELECT … FROM workflow_jobs WHERE status = 'failed' …`) run unchanged. Soft-deleted jobs are
# left out, as the earlier service deleted them.
WORKFLOW_JOBS_VIEW = """
CREATE VIEW workflow_jobs AS
SELECT job_id, workflow_name, workflow_version, status, input_data, output AS output_data,
       {error_message} AS error_message, {error_type} AS error_type,
       user_id, username, action, priority, parent_job_id,
       created_at, started_at, completed_at
FROM jobs
WHERE deleted_at IS NULL
"""


def create_view(conn: Connection) -> None:
    """(Re)create workflow_jobs as this revision defines it."""
    if conn.dialect.name == "postgresql":
        fields = {"error_message": "error->>'message'", "error_type": "error->>'type'"}
    else:
        fields = {
            "error_message": "json_extract(error, '$.message')",
            "error_type": "json_extract(error, '$.type')",
        }
    conn.execute(sa.text("DROP VIEW IF EXISTS workflow_jobs"))
    conn.execute(sa.text(WORKFLOW_JOBS_VIEW.format(**fields)))


def upgrade() -> None:
    conn = op.get_bind()
    metadata.create_all(conn, checkfirst=False)
    create_view(conn)


def downgrade() -> None:
    conn = op.get_bind()
    conn.execute(sa.text("DROP VIEW IF EXISTS workflow_jobs"))
    metadata.drop_all(conn, checkfirst=False)
