"""Index jobs by (created_at, job_id).

The job list without a status or workflow filter: newest first by (created_at, job_id), its
keyset cursor, and its `since` bound.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # if_not_exists: a database made before migrations by a build that already declared the
    # index in core/models.py has it, and is stamped 0001 all the same.
    op.create_index("ix_jobs_created", "jobs", ["created_at", "job_id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_jobs_created", table_name="jobs", if_exists=True)
