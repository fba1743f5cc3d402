"""Input/output of the `webhook_send` activity; pure models the interpreter imports."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class WebhookSendInput(BaseModel):
    step_id: str | None = None
    job_id: str
    url: str
    payload: Any
    event: str
    delivery_id: str  # stable across retries, e.g. f"{job_id}:{step_id}"
    secret_ref: str | None = None  # None / "env" → LLM_WEBHOOK_SECRET
    timeout_seconds: float = 30


class WebhookSendOutput(BaseModel):
    status_code: int
    delivery_id: str
    attempt: int
    duration_ms: int
    response_snippet: str
