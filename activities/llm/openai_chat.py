"""OpenAI chat-completions wire format: providers `openrouter`, `openai`, `openai_compatible`.

POST {base}/chat/completions with `messages`, optional `response_format`
(`json_object`, or `json_schema` with strict off so any valid schema is accepted).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from activities.llm.chat import ChatRequest, ChatResult, usage_of
from activities.llm.http_call import (
    WHOLE_REPLY,
    error_in_body,
    post_json,
    post_stream,
    stream_ended_early,
)
from activities.llm.response_format import system_with_format

# OpenRouter attributes traffic to an app by these two headers.
OPENROUTER_APP_URL = "https://github.com/llmflow/llmflow"
OPENROUTER_APP_TITLE = "llmflow"

# OpenAI reasoning models reject `max_tokens` and want `max_completion_tokens`.
_COMPLETION_TOKENS_PREFIXES = ("o1", "o3", "o4", "gpt-5")


class OpenAIChatProvider:
    def __init__(
        self,
        name: str,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str | None,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self._http = http
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._api_key = api_key
        self._extra_headers = extra_headers or {}

    def build_body(self, request: ChatRequest) -> dict[str, Any]:
        fmt = request.response_format
        messages: list[dict[str, str]] = []
        # json_object mode requires the word "JSON" in the messages; the schema itself rides in
        # response_format, so it isn't repeated in the prompt.
        system = system_with_format(request.system, fmt, include_schema=False)
        if system:
            messages.append({"role": "system", "content": system})
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        body: dict[str, Any] = {"model": request.model, "messages": messages}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.max_tokens is not None:
            uses_completion_tokens = self.name == "openai" and request.model.startswith(
                _COMPLETION_TOKENS_PREFIXES
            )
            body["max_completion_tokens" if uses_completion_tokens else "max_tokens"] = (
                request.max_tokens
            )
        if fmt.is_json and fmt.schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": fmt.name, "schema": fmt.schema, "strict": False},
            }
        elif fmt.is_json:
            body["response_format"] = {"type": "json_object"}
        return body

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self._extra_headers}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    async def complete(self, request: ChatRequest) -> ChatResult:
        what = f"{self.name} chat completion"
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
        return self._parse(payload, what, details)

    def _parse(self, payload: Any, what: str, details: dict[str, Any]) -> ChatResult:
        if not isinstance(payload, dict):
            raise error_in_body(
                {"error": "response is not a JSON object"}, what=what, secret=None, details=details
            )
        choices = payload.get("choices")
        if not choices or not isinstance(choices, list):
            if payload.get("error"):
                raise error_in_body(payload, what=what, secret=self._api_key, details=details)
            raise error_in_body(
                {"error": "response has no choices"}, what=what, secret=None, details=details
            )
        choice = choices[0] or {}
        message = choice.get("message") or {}
        usage = payload.get("usage") or {}
        return ChatResult(
            content=_text_of(message.get("content")),
            usage=usage_of(
                usage.get("prompt_tokens"),
                usage.get("completion_tokens"),
                usage.get("total_tokens"),
            ),
            finish_reason=choice.get("finish_reason"),
            model=payload.get("model"),
        )

    async def _stream(
        self,
        request: ChatRequest,
        on_delta: Callable[[str], Awaitable[None]],
        what: str,
        details: dict[str, Any],
    ) -> ChatResult:
        # include_usage: the last chunk carries the usage, so a streamed call costs the same.
        body = {
            **self.build_body(request),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        parts: list[str] = []
        usage: dict[str, Any] = {}
        finish_reason: str | None = None
        model: str | None = None
        done = False
        async for event, data in post_stream(
            self._http,
            self._url,
            headers=self._headers(),
            body=body,
            timeout_seconds=request.timeout_seconds,
            what=what,
            secret=self._api_key,
            details=details,
        ):
            if event == WHOLE_REPLY:
                whole = self._parse(json.loads(data), what, details)
                if whole.content:
                    await on_delta(whole.content)
                return whole
            if data.strip() == "[DONE]":
                done = True
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                continue  # not JSON: a proxy's noise, not part of the reply
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error"):
                raise error_in_body(chunk, what=what, secret=self._api_key, details=details)
            model = chunk.get("model") or model
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                text = _text_of((choice.get("delta") or {}).get("content"))
                if text:
                    parts.append(text)
                    await on_delta(text)
                finish_reason = choice.get("finish_reason") or finish_reason
        if not done and finish_reason is None:
            raise stream_ended_early(what, details)
        return ChatResult(
            content="".join(parts),
            usage=usage_of(
                usage.get("prompt_tokens"),
                usage.get("completion_tokens"),
                usage.get("total_tokens"),
            ),
            finish_reason=finish_reason,
            model=model,
        )


def _text_of(content: Any) -> str:
    # Some servers return content as a list of parts ([{"type": "text", "text": ...}]).
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)
