"""Input of the `http_request` activity; a pure model the interpreter imports (the output,
HttpRequestOutput, is in core/step_outputs.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class HttpRequestInput(BaseModel):
    step_id: str
    method: str = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, Any] = Field(default_factory=dict)
    json_body: Any = None
    expected_status: list[int] | None = None  # None → any 2xx
    timeout_seconds: float = 30
