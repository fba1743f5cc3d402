"""Response bodies in the real wire formats of the LLM providers, for FakeHTTPServer routes."""

from __future__ import annotations

from typing import Any

from tests.fakes.http_server import Response


def openai_chat_body(
    content: str | None,
    *,
    model: str = "gpt-4o-mini",
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    """An OpenAI / OpenRouter chat.completion object."""
    return {
        "id": "chatcmpl-test123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "fp_test",
    }


def openai_chat(content: str | None, **kwargs: Any) -> Response:
    return Response(200, openai_chat_body(content, **kwargs))


def openai_error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        status,
        {"error": {"message": message, "type": type_, "param": None, "code": code}},
        headers=headers or {},
    )


def anthropic_message_body(
    text: str,
    *,
    model: str = "claude-3-5-haiku-20241022",
    input_tokens: int = 12,
    output_tokens: int = 6,
    stop_reason: str = "end_turn",
) -> dict[str, Any]:
    """An Anthropic Messages API `message` object."""
    return {
        "id": "msg_01TestTestTest",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def anthropic_message(text: str, **kwargs: Any) -> Response:
    return Response(200, anthropic_message_body(text, **kwargs))


def anthropic_error(
    status: int, error_type: str, message: str, *, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        status,
        {"type": "error", "error": {"type": error_type, "message": message}},
        headers=headers or {},
    )
