"""Provider-neutral chat request/result and the provider protocol.

The activity builds one ChatRequest per HTTP call (the JSON repair loop makes several); each
provider module translates it to its wire format and back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from activities.llm.response_format import ResponseFormat
from core.step_outputs import LlmUsage


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "user" | "assistant"
    content: str


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[ChatMessage]
    system: str | None
    response_format: ResponseFormat
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    timeout_seconds: float = 120.0
    # Mock provider only.
    mock_response: str | None = None
    mock_latency_ms: int = 0
    # Set: stream the reply and hand each piece of text here as it arrives.
    on_delta: Callable[[str], Awaitable[None]] | None = None


@dataclass
class ChatResult:
    content: str
    usage: LlmUsage
    finish_reason: str | None
    model: str | None = None  # as reported by the provider, when it says
    warnings: list[str] = field(default_factory=list)


class ChatProvider(Protocol):
    name: str

    async def complete(self, request: ChatRequest) -> ChatResult: ...


def usage_of(
    input_tokens: int | None, output_tokens: int | None, total: int | None = None
) -> LlmUsage:
    i, o = int(input_tokens or 0), int(output_tokens or 0)
    return LlmUsage(input_tokens=i, output_tokens=o, total_tokens=int(total or (i + o)))
