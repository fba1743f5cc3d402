"""Input of the `webhook_send` activity; a pure model the interpreter imports (the output,
WebhookSendOutput, is in core/step_outputs.py)."""

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
