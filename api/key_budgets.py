"""Per-API-key daily budgets (API_KEY_BUDGETS=name:usd,…): what a key's jobs submitted today
(UTC) spent on llm calls, checked before each of its submits.

The spend is read, not counted on the side: the finished jobs' `total_cost_usd` summed by the
mirror database, plus the spend so far of the key's open jobs from their runs' `progress`
query (the interpreter keeps it exact from the providers' usages). No second counter can
drift from what the jobs report. The cost: one indexed query (owner, created_at) and one
Temporal query per open job of that key, only for keys that have a budget.

Failure modes: the database down → 503 for keys with a budget (their spend can't be known and
a budget that can't be checked is not enforced by accepting); keys without one are untouched.
An open job whose query fails (Temporal busy, the run just closing) counts as 0 until its row
says what it spent; a job started before midnight counts for the day it was submitted.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from api.temporal_link import TemporalLink
from core import db
from core.contracts import Progress
from core.settings import Settings

QUERY_TIMEOUT = timedelta(seconds=2)
QUERIES_AT_ONCE = 16


class DailyBudgetReached(Exception):
    def __init__(self, key: str, spent: float, budget: float) -> None:
        super().__init__(
            f"API key {key!r} spent {spent} USD on jobs submitted today (UTC), "
            f"reaching its daily budget of {budget} USD (API_KEY_BUDGETS); "
            "it resets at 00:00 UTC"
        )
        self.key, self.spent, self.budget = key, spent, budget


class BudgetUnknown(Exception):
    pass


def day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def check(key: str, *, settings: Settings, engine: Engine, temporal: TemporalLink) -> None:
    """Raise DailyBudgetReached when `key` has a budget and today's spend reached it."""
    budget = settings.api_key_budgets.get(key)
    if budget is None:
        return
    spent = await spent_today(key, engine=engine, temporal=temporal)
    if spent >= budget:
        raise DailyBudgetReached(key, spent, budget)


async def spent_today(key: str, *, engine: Engine, temporal: TemporalLink) -> float:
    since = day_start(datetime.now(UTC))
    try:
        finished, open_ids = await asyncio.to_thread(db.owner_spend_since, engine, key, since)
    except SQLAlchemyError as exc:
        raise BudgetUnknown(
            f"database unavailable: the daily budget of API key {key!r} can't be checked; retry"
        ) from exc
    gate = asyncio.Semaphore(QUERIES_AT_ONCE)
    running = await asyncio.gather(*(_spent_by(job_id, temporal, gate) for job_id in open_ids))
    return round(finished + sum(running), 6)


async def _spent_by(job_id: str, temporal: TemporalLink, gate: asyncio.Semaphore) -> float:
    async with gate:
        try:
            client = await temporal.client()
            progress = await client.get_workflow_handle(job_id).query(
                "progress", result_type=Progress, rpc_timeout=QUERY_TIMEOUT
            )
        except Exception:
            return 0.0
    return progress.cost_usd
