"""Input of the `llm_call` activity (the `llm` step); its output, LlmCallOutput, is in
core/step_outputs.py.

These travel through Temporal history, so they hold no secrets: keys come from Settings.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


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
