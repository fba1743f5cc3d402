"""Forks: a job records the run it was forked from (POST /jobs/{id}/fork).

fork_of names the parent job, forked_from_step and fork_reason say where and why, fork_plan
what the fork reused, overrode or ran again per step; ix_jobs_fork_of_created serves
GET /jobs/{id}/forks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("fork_of", sa.String(200), nullable=True))
        batch.add_column(sa.Column("forked_from_step", sa.String(500), nullable=True))
        batch.add_column(sa.Column("fork_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("fork_plan", JSON_DOC, nullable=True))
    op.create_index("ix_jobs_fork_of_created", "jobs", ["fork_of", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_fork_of_created", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in ("fork_plan", "fork_reason", "forked_from_step", "fork_of"):
            batch.drop_column(column)
