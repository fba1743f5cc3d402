"""Input/output of the `http_request` activity; pure models the interpreter imports."""

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


class HttpRequestOutput(BaseModel):
    status_code: int
    headers: dict[str, str]
    data: Any  # parsed JSON for JSON responses, else text (≤ 1 MB); None for an empty body
    attempt: int
