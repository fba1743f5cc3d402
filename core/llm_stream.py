"""Streamed LLM text, outside Temporal's history: the worker appends each delta to a Redis
stream per job, and readers (the gateway's SSE endpoint, `llmflow run --wait`, `jobs watch`)
follow it.

Temporal stays the source of truth: the step's recorded output is the whole text, whatever
happened here. A delta carries the activity `attempt` and the provider `call` within it (the
JSON repair loop and fallbacks make several); the text of a step is the concatenation of the
deltas of its last (attempt, call). Publishing never fails a step: with Redis down, deltas are
dropped with one warning and the text arrives whole when the step finishes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("llmflow.stream")

# Long enough for a reader that connects after the step started; the stream is a side
# channel, so it may expire before the job's record does.
STREAM_TTL_SECONDS = 3600
# Bound per job (approximate trimming keeps XADD O(1)); a long generation keeps its tail.
STREAM_MAX_ENTRIES = 20_000
# One delta is a provider chunk; this bounds a hostile or buggy one.
MAX_DELTA_CHARS = 16_384
DEGRADED_WARNING = "stream: REDIS_URL is not set, so the text arrives whole when the step ends"


def stream_key(job_id: str) -> str:
    return f"llmflow:llm-deltas:{job_id}"


@dataclass(frozen=True)
class Delta:
    path: str
    text: str
    attempt: int
    call: int
    id: str = ""  # the Redis stream entry id ("<ms>-<seq>"); orders deltas across readers

    def event(self) -> dict[str, Any]:
        return {"path": self.path, "text": self.text, "attempt": self.attempt, "call": self.call}


class DeltaSink:
    """Appends deltas for one worker; shared by every llm activity it runs."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._failed = False

    async def publish(self, job_id: str, delta: Delta) -> bool:
        """False when the delta could not be stored (the caller warns once)."""
        fields = {
            "path": delta.path,
            "text": delta.text[:MAX_DELTA_CHARS],
            "attempt": str(delta.attempt),
            "call": str(delta.call),
        }
        key = stream_key(job_id)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(key, fields, maxlen=STREAM_MAX_ENTRIES, approximate=True)
                pipe.expire(key, STREAM_TTL_SECONDS)
                await pipe.execute()
        except Exception as exc:  # Redis down or refusing: the step goes on without deltas
            if not self._failed:
                log.warning("llm deltas for job %s not published: %s", job_id, exc)
            self._failed = True
            return False
        self._failed = False
        return True


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def read_deltas(
    redis: Any, job_id: str, after: str = "0", *, block_ms: int | None = None, count: int = 500
) -> list[Delta]:
    """Deltas stored after entry id `after` ("0": from the start). `block_ms` waits that long
    for the first one when none is there yet. Redis errors read as no deltas."""
    try:
        answer = await redis.xread({stream_key(job_id): after}, count=count, block=block_ms)
    except Exception as exc:
        log.debug("llm deltas for job %s not read: %s", job_id, exc)
        return []
    found: list[Delta] = []
    for _key, entries in answer or []:
        for entry_id, fields in entries:
            data = {_text(k): _text(v) for k, v in fields.items()}
            try:
                found.append(
                    Delta(
                        path=data["path"],
                        text=data["text"],
                        attempt=int(data["attempt"]),
                        call=int(data["call"]),
                        id=_text(entry_id),
                    )
                )
            except (KeyError, ValueError):
                continue  # not one of ours
    return found
