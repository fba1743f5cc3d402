"""The offline `mock` provider: deterministic replies, configurable latency, zero cost.

For demos, tests and benchmarks. The same request always gives the same reply: a fixed
`mock_response` when given, JSON shaped by the step's schema for JSON formats; for text, the
reply outline the prompt shows (its last fenced ```markdown block, `<a | b>` placeholders
filled with their first choice) when it has one, else a short summary of the prompt. Text
replies start with a `[mock:<model>]` tag so they are never mistaken for a real answer.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import zlib

from activities.llm.chat import ChatRequest, ChatResult, usage_of
from activities.llm.schema_sample import sample_for_schema

_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
_MAX_SUMMARY_WORDS = 24
_MAX_SUMMARY_CHARS = 160
_OUTLINE_LANGUAGES = {"markdown", "md"}
_PLACEHOLDER = re.compile(r"<([^<>\n]*)>")


def summarize(prompt: str) -> str:
    """First sentence of the prompt, whitespace collapsed, bounded in words and characters."""
    text = " ".join(prompt.split())
    if not text:
        return "(empty prompt)"
    first = _SENTENCE_END.split(text, maxsplit=1)[0]
    words = first.split(" ")
    summary = " ".join(words[:_MAX_SUMMARY_WORDS])
    if len(summary) > _MAX_SUMMARY_CHARS:
        summary = summary[:_MAX_SUMMARY_CHARS].rstrip()
    if summary != text:
        summary += "…"
    return summary


def outline_of(prompt: str) -> str | None:
    """The text of the prompt's last fenced block tagged `markdown`/`md`, if any.

    Prompts that want a Markdown reply of a given shape often show it that way; following it
    lets an offline run produce something the workflow's parsing steps can read."""
    outline: str | None = None
    fence = ""  # the open fence's marker run, e.g. "```" or "~~~~"; "" outside a fence
    captured: list[str] | None = None
    for line in prompt.splitlines():
        stripped = line.strip()
        if not fence:
            if stripped[:3] in ("```", "~~~"):
                info = stripped.lstrip(stripped[0])
                fence = stripped[: len(stripped) - len(info)]
                captured = [] if info.strip().lower() in _OUTLINE_LANGUAGES else None
        elif stripped.startswith(fence) and not stripped.strip(fence[0]):
            if captured is not None:
                outline = "\n".join(captured)
            fence, captured = "", None
        elif captured is not None:
            captured.append(line)
    return outline


def fill_outline(outline: str) -> str:
    """`<one | two>` → `one`, `<what to write>` → `what to write`."""
    return _PLACEHOLDER.sub(lambda m: m.group(1).split("|")[0].strip(), outline).strip()


def estimate_tokens(text: str) -> int:
    # ~4 characters per token is the usual rule of thumb for English text.
    return math.ceil(len(text) / 4) if text else 0


def mock_reply(request: ChatRequest) -> str:
    if request.mock_response is not None:
        return request.mock_response
    prompt = next((m.content for m in request.messages if m.role == "user"), "")
    fmt = request.response_format
    if fmt.is_json and fmt.schema is not None:
        # Seeded by the prompt: the same input answers the same, another input differently.
        seed = zlib.crc32(prompt.encode())
        return json.dumps(sample_for_schema(fmt.schema, seed=seed), ensure_ascii=False)
    if fmt.is_json:
        return json.dumps({"result": summarize(prompt)}, ensure_ascii=False)
    outline = outline_of(prompt)
    if outline and outline.strip():
        return f"[mock:{request.model}]\n\n{fill_outline(outline)}"
    return f"[mock:{request.model}] {summarize(prompt)}"


def stream_chunks(text: str, words: int = 3) -> list[str]:
    """`text` cut after every few words; the pieces join back to exactly `text`."""
    pieces = re.split(r"(?<=\s)(?=\S)", text)
    return ["".join(pieces[i : i + words]) for i in range(0, len(pieces), words)] or [text]


class MockProvider:
    name = "mock"

    async def complete(self, request: ChatRequest) -> ChatResult:
        content = mock_reply(request)
        if request.on_delta is not None:
            # Streams too (a few words a chunk), its latency spread over the chunks, so the
            # tour shows streaming without a provider key.
            chunks = stream_chunks(content)
            pause = request.mock_latency_ms / 1000 / max(1, len(chunks))
            for chunk in chunks:
                if pause > 0:
                    await asyncio.sleep(pause)
                await request.on_delta(chunk)
        elif request.mock_latency_ms > 0:
            await asyncio.sleep(request.mock_latency_ms / 1000)
        prompt_chars = (request.system or "") + "".join(m.content for m in request.messages)
        return ChatResult(
            content=content,
            usage=usage_of(estimate_tokens(prompt_chars), estimate_tokens(content)),
            finish_reason="stop",
            model=request.model,
        )
