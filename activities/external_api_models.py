"""Input/output of the `external_api_call` activity, importable by workflow code (no I/O deps)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ExternalApiInput(BaseModel):
    step_id: str
    service: str
    operation: str
    params: dict[str, Any] = {}
    cache_ttl: int | None = None  # None → the registry's TTL; 0 → no cache
    timeout_seconds: float = 30


class ExternalApiOutput(BaseModel):
    data: Any
    service: str
    operation: str
    cached: bool
    status_code: int
    attempt: int
    # Go to the step record, not the output (a development stack's sample data says so here).
    warnings: list[str] = Field(default_factory=list)
