"""Anthropic Messages API: POST {base}/v1/messages.

Differences from the OpenAI format that matter here: the system prompt is a top-level field,
`max_tokens` is required, the reply is a list of content blocks, and there is no JSON mode, so
a JSON response_format (schema included) is asked for in the system prompt.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from activities.llm.chat import ChatRequest, ChatResult, usage_of
from activities.llm.http_call import error_in_body, post_json, post_stream, stream_ended_early
from activities.llm.response_format import system_with_format
from core.step_outputs import LlmUsage

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024


class AnthropicMessagesProvider:
    name = "anthropic"

    def __init__(self, http: httpx.AsyncClient, *, base_url: str, api_key: str) -> None:
        self._http = http
        base = base_url.rstrip("/")
        # ANTHROPIC_BASE_URL is documented without /v1, but tolerate it being included.
        self._url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        self._api_key = api_key

    def build_body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        system = system_with_format(request.system, request.response_format, include_schema=True)
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        return body

    def _headers(self) -> dict[str, str]:
        return {
            "x-api-key": self._api_key,
            "anthropic-version": ANTHROPIC_VERSION,
            "Content-Type": "application/json",
        }

    async def complete(self, request: ChatRequest) -> ChatResult:
        what = "anthropic messages"
        details = {"provider": self.name, "model": request.model}
        if request.on_delta is not None:
            return await self._stream(request, request.on_delta, what, details)
        payload = await post_json(
            self._http,
            self._url,
            headers=self._headers(),
            body=self.build_body(request),
            timeout_seconds=request.timeout_seconds,
            what=what,
            secret=self._api_key,
            details=details,
        )
        if payload.get("type") == "error":
            raise error_in_body(payload, what=what, secret=self._api_key, details=details)
        blocks = payload.get("content") or []
        text = "".join(
            b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"
        )
        return ChatResult(
            content=text,
            usage=_usage(payload.get("usage") or {}),
            finish_reason=payload.get("stop_reason"),
            model=payload.get("model"),
        )

    async def _stream(
        self,
        request: ChatRequest,
        on_delta: Callable[[str], Awaitable[None]],
        what: str,
        details: dict[str, Any],
    ) -> ChatResult:
        # Events: message_start (model, input usage), content_block_delta (text_delta),
        # message_delta (stop_reason, output usage), message_stop; ping and error besides.
        parts: list[str] = []
        usage: dict[str, Any] = {}
        stop_reason: str | None = None
        model: str | None = None
        stopped = False
        async for event, data in post_stream(
            self._http,
            self._url,
            headers=self._headers(),
            body={**self.build_body(request), "stream": True},
            timeout_seconds=request.timeout_seconds,
            what=what,
            secret=self._api_key,
            details=details,
        ):
            try:
                message = json.loads(data)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            kind = message.get("type") or event
            if kind == "error":
                raise error_in_body(message, what=what, secret=self._api_key, details=details)
            if kind == "message_start":
                start = message.get("message") or {}
                model = start.get("model") or model
                usage.update(start.get("usage") or {})
            elif kind == "content_block_delta":
                delta = message.get("delta") or {}
                text = delta.get("text") if delta.get("type") == "text_delta" else None
                if text:
                    parts.append(text)
                    await on_delta(text)
            elif kind == "message_delta":
                stop_reason = (message.get("delta") or {}).get("stop_reason") or stop_reason
                usage.update(message.get("usage") or {})
            elif kind == "message_stop":
                stopped = True
                break
        if not stopped:
            raise stream_ended_early(what, details)
        return ChatResult(
            content="".join(parts), usage=_usage(usage), finish_reason=stop_reason, model=model
        )


def _usage(usage: dict[str, Any]) -> LlmUsage:
    # Prompt-cache reads/writes are billed input too; Anthropic counts them separately.
    return usage_of(
        (usage.get("input_tokens") or 0)
        + (usage.get("cache_creation_input_tokens") or 0)
        + (usage.get("cache_read_input_tokens") or 0),
        usage.get("output_tokens"),
    )
