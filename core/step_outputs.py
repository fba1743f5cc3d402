"""What the activity steps return: the result models of `llm_call`, `external_api_call`,
`http_request` and `webhook_send`.

They live here, below the activities, because workflow_defs/validation.py reads their fields to
know the keys `${steps.<id>.<key>}` may reach, and workflow_defs/ must not import activities/.
They travel through Temporal history as JSON: renaming a class is free, but a field removed or
made required breaks the replay of recorded runs.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, computed_field


class LlmUsage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: LlmUsage) -> LlmUsage:
        return LlmUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class LlmCallUsage(BaseModel):
    """One call's bill in the shape the earlier service's client reads as `llm_usage`."""

    model: str
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float
    duration_ms: int


class LlmCallOutput(BaseModel):
    content: str
    data: Any = None  # parsed JSON when a JSON response_format was asked for
    model: str
    provider: str
    usage: LlmUsage
    cost_usd: float
    duration_ms: int
    finish_reason: str | None
    attempt: int
    warnings: list[str] = Field(default_factory=list)

    # Derived, not stored: results recorded in history before it existed decode without it
    # and still carry it, so old runs replay and read the same.
    @computed_field  # type: ignore[prop-decorator]
    @property
    def llm_usage(self) -> LlmCallUsage:
        return LlmCallUsage(
            model=self.model,
            input_tokens=self.usage.input_tokens,
            output_tokens=self.usage.output_tokens,
            total_tokens=self.usage.total_tokens,
            cost_usd=self.cost_usd,
            duration_ms=self.duration_ms,
        )


class ExternalApiOutput(BaseModel):
    data: Any
    service: str
    operation: str
    cached: bool
    status_code: int
    attempt: int
    # Go to the step record, not the output (a development stack's sample data says so here).
    warnings: list[str] = Field(default_factory=list)


class HttpRequestOutput(BaseModel):
    status_code: int
    headers: dict[str, str]
    data: Any  # parsed JSON for JSON responses, else text (≤ 1 MB); None for an empty body
    attempt: int


class WebhookSendOutput(BaseModel):
    status_code: int
    delivery_id: str
    attempt: int
    duration_ms: int
    response_snippet: str
