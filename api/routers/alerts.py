"""/api/v1/alerts: the alert history and a summary of it, read from the mirror DB."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from api.alert_schemas import (
    ALERT_LEVELS,
    AlertLevel,
    AlertList,
    AlertSummary,
    AlertView,
    levels_at_or_above,
)
from api.auth import Principal
from api.deps import EngineDep
from api.pagination import BadCursor, decode_cursor, encode_cursor
from core import db
from core.models import Alert

router = APIRouter(prefix="/alerts", tags=["alerts"])

AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key (when API_KEYS is set)"}
}
Since = Annotated[
    datetime | None,
    Query(
        description="Only alerts created at or after this ISO 8601 time (UTC when no offset)",
        examples=["2026-11-22T00:00:00Z"],
    ),
]


@router.get(
    "",
    response_model=AlertList,
    responses={**AUTH, 422: {"description": "Unknown level, bad `since` or invalid cursor"}},
)
async def list_alerts(
    engine: EngineDep,
    caller: Principal,
    level: Annotated[
        AlertLevel | None,
        Query(
            description=(
                "Minimum severity: this level **and above** (INFO < WARNING < ERROR < "
                "CRITICAL), e.g. `ERROR` returns ERROR and CRITICAL alerts. Upper case."
            )
        ),
    ] = None,
    source: Annotated[str | None, Query(max_length=100, description="Exact source")] = None,
    job_id: Annotated[str | None, Query(max_length=200)] = None,
    since: Since = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> AlertList:
    """Alerts newest first, with keyset pagination (`next_cursor`). Alerts about a job are
    shown to the key that owns it (and admin keys) only."""
    before = _decode_cursor(cursor) if cursor else None
    rows = await asyncio.to_thread(
        db.list_alerts,
        engine,
        levels=levels_at_or_above(level) if level else None,
        source=source,
        job_id=job_id,
        since=since,
        limit=limit + 1,
        before=before,
        owner=caller.owner_filter,
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1])
    return AlertList(items=[_view(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/summary",
    response_model=AlertSummary,
    responses={**AUTH, 422: {"description": "Bad `since`"}},
)
async def alert_summary(
    engine: EngineDep,
    caller: Principal,
    since: Since = None,
    source: Annotated[
        str | None, Query(max_length=100, description="Only this source (exact)")
    ] = None,
) -> AlertSummary:
    """Counts per level (every level present, 0 when none) and per source, and the newest alert."""
    rows, latest = await asyncio.to_thread(
        db.alert_summary, engine, since=since, source=source, owner=caller.owner_filter
    )
    by_level: dict[str, int] = dict.fromkeys(ALERT_LEVELS, 0)
    by_source: dict[str, int] = {}
    for level, src, n in rows:
        by_level[level] = by_level.get(level, 0) + n
        by_source[src] = by_source.get(src, 0) + n
    return AlertSummary(
        total=sum(by_level.values()),
        by_level=by_level,
        by_source=by_source,
        latest=_view(latest) if latest else None,
    )


def _view(row: Alert) -> AlertView:
    return AlertView(
        id=row.id or 0,
        level=row.level,
        source=row.source,
        message=row.message,
        job_id=row.job_id,
        details=row.details,
        created_at=db.as_utc(row.created_at) or row.created_at,
    )


def _encode_cursor(row: Alert) -> str:
    return encode_cursor(db.as_utc(row.created_at) or row.created_at, row.id or 0)


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        return decode_cursor(cursor, int)
    except BadCursor as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [{"loc": ["query", "cursor"], "msg": str(exc), "type": "value_error"}],
        ) from None
