"""GET /jobs/{id}/compare/{other}: two runs side by side, step by step, from their records."""

from __future__ import annotations

from typing import Any

from api.fork_schemas import RunComparison, RunTotals, StepComparison, StepSide
from core.models import Job

REUSED = "output reused from an earlier run"


def _records(row: Job) -> dict[str, dict[str, Any]]:
    """Step records by path (a foreach item's inner step: `enrich[3].summarize`)."""
    found: dict[str, dict[str, Any]] = {}
    for record in (row.job_metadata or {}).get("steps", []):
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            found[str(record.get("path") or record["id"])] = record
    return found


def _side(record: dict[str, Any] | None) -> StepSide | None:
    if record is None:
        return None
    return StepSide(
        status=record.get("status"),
        tokens=int(record.get("tokens") or 0),
        cost_usd=float(record.get("cost_usd") or 0.0),
        duration_ms=record.get("duration_ms"),
        reused=REUSED in (record.get("warnings") or []),
    )


def _totals(row: Job) -> RunTotals:
    meta = row.job_metadata or {}
    return RunTotals(
        status=row.status,
        tokens=int(meta.get("total_tokens") or 0),
        cost_usd=float(meta.get("total_cost_usd") or 0.0),
        duration_ms=meta.get("duration_ms") if isinstance(meta.get("duration_ms"), int) else None,
    )


def compare_runs(job: Job, other: Job) -> RunComparison:
    ours, theirs = _records(job), _records(other)
    paths = [*ours, *(p for p in theirs if p not in ours)]
    steps = []
    for path in paths:
        a, b = ours.get(path), theirs.get(path)
        steps.append(
            StepComparison(
                path=path,
                type=(a or b or {}).get("type"),
                job=_side(a),
                other=_side(b),
                # A step only one run has counts as changed: its output exists on one side.
                output_changed=a is None or b is None or a.get("output") != b.get("output"),
            )
        )
    return RunComparison(
        job_id=job.job_id,
        other_job_id=other.job_id,
        job=_totals(job),
        other=_totals(other),
        output_changed=job.output != other.output,
        steps=steps,
    )
