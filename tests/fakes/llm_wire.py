"""Response bodies in the real wire formats of the LLM providers, for FakeHTTPServer routes."""

from __future__ import annotations

import json
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


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


def openai_stream(
    pieces: list[str],
    *,
    pause: float = 0.0,
    model: str = "gpt-4o-mini",
    prompt_tokens: int = 10,
    drop_after: int | None = None,
) -> Response:
    """A chat.completion.chunk stream as OpenAI and OpenRouter send it with
    `stream_options.include_usage`: a role chunk, one chunk per piece, a finish chunk, a usage
    chunk with no choices, then `[DONE]`. `drop_after`: the connection is cut after that many
    pieces."""
    base = {"id": "chatcmpl-stream1", "object": "chat.completion.chunk", "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [(0.0, b": OPENROUTER PROCESSING\n\n"), (0.0, _sse(chunk({"role": "assistant"})))]
    for i, piece in enumerate(pieces):
        if drop_after is not None and i == drop_after:
            return Response(200, stream=out, headers=SSE_HEADERS, drop=True)
        out.append((pause, _sse(chunk({"content": piece}))))
    completion = sum(len(p.split()) for p in pieces)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }
    out += [
        (0.0, _sse(chunk({}, "stop"))),
        (0.0, _sse({**base, "choices": [], "usage": usage})),
        (0.0, _sse("[DONE]")),
    ]
    return Response(200, stream=out, headers=SSE_HEADERS)


def anthropic_stream(
    pieces: list[str], *, pause: float = 0.0, model: str = "claude-3-5-haiku-20241022"
) -> Response:
    """A Messages stream: message_start, content_block_start, ping, one text_delta per piece,
    content_block_stop, message_delta (stop_reason, output usage), message_stop."""
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_stream1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 12, "output_tokens": 1},
        },
    }
    out = [
        (0.0, _sse(start, "message_start")),
        (
            0.0,
            _sse(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            ),
        ),
        (0.0, _sse({"type": "ping"}, "ping")),
    ]
    for piece in pieces:
        delta = {"type": "content_block_delta", "index": 0}
        delta["delta"] = {"type": "text_delta", "text": piece}  # type: ignore[assignment]
        out.append((pause, _sse(delta, "content_block_delta")))
    out += [
        (0.0, _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")),
        (
            0.0,
            _sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 7},
                },
                "message_delta",
            ),
        ),
        (0.0, _sse({"type": "message_stop"}, "message_stop")),
    ]
    return Response(200, stream=out, headers=SSE_HEADERS)


SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
