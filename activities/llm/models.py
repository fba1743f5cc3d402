"""Input and output of the `llm_call` activity (the `llm` step).

These travel through Temporal history, so they hold no secrets: keys come from Settings.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, computed_field


class LlmFallback(BaseModel):
    provider: str
    model: str


class LlmCallInput(BaseModel):
    step_id: str
    job_id: str | None = None
    workflow: str | None = None  # the definition's name (labels the cost metric)
    provider: str | None = None  # None → settings.llm_default_provider
    model: str
    prompt: str  # already rendered
    system_prompt: str | None = None
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    top_p: float | None = None
    # "text" | "json" | {"json_schema": {...}} (OpenAI's {"type": "json_schema", ...} and
    # {"schema": ...} are accepted too; see response_format.py).
    response_format: str | dict[str, Any] | None = None
    fallbacks: list[LlmFallback] = Field(default_factory=list)
    base_url: str | None = None  # openai_compatible only (vLLM, Ollama, llama.cpp)
    max_repairs: int = Field(default=2, ge=0, le=10)
    request_timeout_seconds: float = Field(default=120, gt=0)
    mock_response: str | None = None
    mock_latency_ms: int | None = Field(default=None, ge=0)
    # Set for a step with `stream: true`: the step's path, under which its deltas are published.
    stream_to: str | None = None


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
