"""A fork's link to its parent and its plan, as the API shows them (read off the job row)."""

from __future__ import annotations

from api.schemas import ForkInfo
from core.models import Job


def fork_info(row: Job) -> ForkInfo | None:
    if row.fork_of is None:
        return None
    plan = row.fork_plan or {}
    return ForkInfo(
        parent=row.fork_of,
        from_step=row.forked_from_step,
        reason=row.fork_reason,
        definition_version=plan.get("definition_version"),
        steps=plan.get("steps") or {},
    )
