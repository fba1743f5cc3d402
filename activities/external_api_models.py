"""Input of the `external_api_call` activity, importable by workflow code (no I/O deps); its
output, ExternalApiOutput, is in core/step_outputs.py."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ExternalApiInput(BaseModel):
    step_id: str
    service: str
    operation: str
    params: dict[str, Any] = {}
    cache_ttl: int | None = None  # None → the registry's TTL; 0 → no cache
    timeout_seconds: float = 30
