"""Response bodies of /api/v1/alerts, and the order of alert levels."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AlertLevel = Literal["INFO", "WARNING", "ERROR", "CRITICAL"]
# Least to most severe: a `level` filter keeps that level and everything after it.
ALERT_LEVELS: tuple[AlertLevel, ...] = ("INFO", "WARNING", "ERROR", "CRITICAL")


def levels_at_or_above(level: AlertLevel) -> tuple[AlertLevel, ...]:
    return ALERT_LEVELS[ALERT_LEVELS.index(level) :]


ALERT_EXAMPLE: dict[str, Any] = {
    "id": 42,
    "level": "ERROR",
    "source": "job",
    "message": "job 5d0c… failed at step explain: AUTH_ERROR",
    "job_id": "5d0c2a1e-8f7b-4c11-9d35-0b6f2c1e9a77",
    "details": {"workflow_name": "quickstart", "error_type": "AUTH_ERROR"},
    "created_at": "2026-11-22T07:41:49.986000Z",
}


class AlertView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [ALERT_EXAMPLE]})

    id: int
    level: str = Field(description="INFO, WARNING, ERROR or CRITICAL")
    source: str = Field(description="What raised it: job, breaker:<name>, webhook, …")
    message: str
    job_id: str | None = None
    details: dict[str, Any] | None = None
    created_at: datetime


class AlertList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [ALERT_EXAMPLE], "next_cursor": None}]}
    )

    items: list[AlertView]
    next_cursor: str | None = Field(
        default=None,
        description="Pass as `cursor` to get the next (older) page; null on the last page.",
    )


class AlertSummary(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "total": 7,
                    "by_level": {"INFO": 2, "WARNING": 1, "ERROR": 4, "CRITICAL": 0},
                    "by_source": {"job": 4, "breaker:openrouter": 3},
                    "latest": ALERT_EXAMPLE,
                }
            ]
        }
    )

    total: int
    by_level: dict[str, int] = Field(description="Every level, 0 when there were none")
    by_source: dict[str, int]
    latest: AlertView | None = Field(description="The newest alert counted, if any")
