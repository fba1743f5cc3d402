"""Server-Sent Events for one job: status changes, steps starting and finishing, streamed LLM
text, waits, and the end.

Built on what the gateway already reads (the mirror row plus the interpreter's `progress`
query), polled twice a second while the job runs, and on the Redis stream the worker writes a
streamed `llm` step's text to (`llm.delta` events, read between polls). Events go out in the
order things happened: a step's deltas before its `finished`, every `finished` before the
terminal `status`. A comment line every 15 s keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from api import job_service
from api.schemas import JobView
from api.temporal_link import TemporalLink
from core.contracts import TERMINAL_STATUSES
from core.llm_stream import Delta, read_deltas
from core.settings import Settings

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
RECORD_FIELDS = ("attempts", "duration_ms", "error")


def sse(event: str, data: Any, event_id: int) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data, default=str)}\n\n"


class _Stream:
    """The state of one client's stream: what it was told, and the deltas read so far."""

    def __init__(self, job_id: str, redis: Any, streamed: frozenset[str]) -> None:
        self.job_id = job_id
        self.redis = redis
        self.streamed = streamed  # ids of the definition's llm steps with stream: true
        self.event_id = 0
        self.last_status: str | None = None
        self.last_steps: dict[str, str] = {}
        self.last_waiting: list[Any] = []
        self.last_sent = time.monotonic()
        self.delta_after = "0"
        self.held: list[Delta] = []  # read before their step was announced as started
        self.deltas_seen: set[str] = set()  # paths that streamed at least one delta

    def emit(self, event: str, data: Any) -> str:
        self.event_id += 1
        self.last_sent = time.monotonic()
        return sse(event, data, self.event_id)

    def announced(self, path: str) -> bool:
        return self.last_steps.get(path, "pending") != "pending"

    async def read(self, block_ms: int | None) -> None:
        if self.redis is None:
            if block_ms:
                await asyncio.sleep(block_ms / 1000)
            return
        found = await read_deltas(self.redis, self.job_id, self.delta_after, block_ms=block_ms)
        if found:
            self.delta_after = found[-1].id
            self.held.extend(found)
        elif block_ms:
            # read_deltas answers at once when Redis is down; don't spin.
            await asyncio.sleep(0)

    def release(self, *, everything: bool = False, path: str | None = None) -> list[str]:
        """The held deltas whose step was announced (all of them with `everything`; only
        `path`'s with `path`)."""
        out, keep = [], []
        for delta in self.held:
            if path is not None and delta.path != path:
                keep.append(delta)
            elif everything or self.announced(delta.path):
                self.deltas_seen.add(delta.path)
                out.append(self.emit("llm.delta", {"job_id": self.job_id, **delta.event()}))
            else:
                keep.append(delta)
        self.held = keep
        return out


async def follow(
    first: JobView,
    *,
    settings: Settings,
    engine: Engine,
    temporal: TemporalLink,
    redis: Any = None,
    streamed: frozenset[str] = frozenset(),
) -> AsyncIterator[str]:
    state = _Stream(first.job_id, redis, streamed)
    view = first
    while True:
        terminal = view.status in TERMINAL_STATUSES
        if view.status != state.last_status and not terminal:
            yield state.emit("status", {"job_id": view.job_id, "status": view.status})
            state.last_status = view.status
        if view.waiting != state.last_waiting and not terminal:
            # Approvals and awaited events: what the job waits for now (an empty list: no more).
            yield state.emit("waiting", {"job_id": view.job_id, "waiting": view.waiting})
            state.last_waiting = list(view.waiting)
        # Deltas stored before this view was read belong to steps it shows started or done.
        await state.read(None)
        # What changed since the last view, in the order it happened (several steps can start
        # and end between two polls).
        for phase, path, now in _timeline(view, state.last_steps):
            spent = _spent(view)
            if phase == "started":
                yield state.emit(
                    "step", {"step_id": path, "path": path, "phase": "started", "spent": spent}
                )
                state.last_steps[path] = "running"
                continue
            record = _record(view, path)
            text = record.pop("text", None)
            for line in state.release(path=path):
                yield line
            if _streams(path, state.streamed) and path not in state.deltas_seen and text:
                # No deltas reached us (no Redis on the worker): the text arrives whole.
                state.deltas_seen.add(path)
                yield state.emit(
                    "llm.delta",
                    {"job_id": view.job_id, "path": path, "text": text, "attempt": 0, "call": 0},
                )
            yield state.emit(
                "step",
                {
                    "step_id": path,
                    "path": path,
                    "phase": "finished",
                    "status": now,
                    **record,
                    "spent": spent,
                },
            )
            state.last_steps[path] = now
        for line in state.release(everything=terminal):
            yield line
        if terminal:
            yield state.emit("status", {"job_id": view.job_id, "status": view.status})
            yield state.emit("job", view.model_dump(mode="json"))
            return
        if time.monotonic() - state.last_sent > KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            state.last_sent = time.monotonic()
        deadline = time.monotonic() + POLL_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            # Streamed text goes out as it comes, between polls of the job itself.
            await state.read(max(1, int(left * 1000)))
            for line in state.release():
                yield line
        try:
            view = await job_service.get_job_view(
                view.job_id, settings=settings, engine=engine, temporal=temporal
            )
        except job_service.NotFound:
            return


def _timeline(view: JobView, said: dict[str, str]) -> list[tuple[str, str, str]]:
    """(phase, path, status) for each step start and end not told yet, oldest first. A start
    is dated by the step's started_at, an end by started_at + duration_ms; what has no date
    keeps the order of the view, after what has."""
    started_at = _started_at(view)
    keyed: list[tuple[tuple[int, datetime, int, int], str, str, str]] = []
    for index, (path, now) in enumerate(_step_statuses(view).items()):
        before = said.get(path, "pending")
        if now == before:
            continue
        begun = started_at.get(path)
        if now == "running" or (before == "pending" and now not in ("pending", "skipped")):
            keyed.append((_when(begun, index, 0), "started", path, now))
        if now not in ("pending", "running"):
            duration = _record(view, path).get("duration_ms")
            end = begun + timedelta(milliseconds=duration) if begun and duration else begun
            keyed.append((_when(end, index, 1), "finished", path, now))
    keyed.sort(key=lambda item: item[0])
    return [(phase, path, now) for _, phase, path, now in keyed]


_UNDATED = datetime.max.replace(tzinfo=UTC)


def _when(at: datetime | None, index: int, phase: int) -> tuple[int, datetime, int, int]:
    # Steps in one workflow task share a timestamp: then the view's order (the order they ran)
    # decides, a step's start before its end.
    return (0, at, index, phase) if at is not None else (1, _UNDATED, index, phase)


def _started_at(view: JobView) -> dict[str, datetime]:
    found: dict[str, Any] = dict((view.progress or {}).get("started") or {})
    for record in (view.metadata or {}).get("steps") or []:
        if isinstance(record, dict) and record.get("started_at"):
            found[_path(record)] = record["started_at"]
    dated: dict[str, datetime] = {}
    for path, text in found.items():
        try:
            dated[path] = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
        except ValueError:
            continue
    return dated


def _spent(view: JobView) -> dict[str, Any]:
    """The job's llm spend as of this view: the run's running total while it runs, the
    result's totals once it ended."""
    progress = view.progress or {}
    if "cost_usd" in progress:
        return {"tokens": progress.get("tokens", 0), "cost_usd": progress["cost_usd"]}
    meta = view.metadata or {}
    return {"tokens": meta.get("total_tokens", 0), "cost_usd": meta.get("total_cost_usd", 0.0)}


def _streams(path: str, streamed: frozenset[str]) -> bool:
    # `enrich[3].summarize` → summarize; `refine#2.draft` → draft.
    return path.rsplit(".", 1)[-1].split("[", 1)[0].split("#", 1)[0] in streamed


def _step_statuses(view: JobView) -> dict[str, str]:
    if view.progress and view.progress.get("steps"):
        return dict(view.progress["steps"])
    records = (view.metadata or {}).get("steps") or []
    return {_path(r): r["status"] for r in records if isinstance(r, dict) and "id" in r}


def _path(record: dict[str, Any]) -> str:
    # Steps are named by their path in the step tree (a top-level step's path is its id).
    return str(record.get("path") or record["id"])


def _record(view: JobView, path: str) -> dict[str, Any]:
    """What the final record will say of a finished step: from the records once the job is
    over, from the progress query's `finished` while it runs."""
    for record in (view.metadata or {}).get("steps") or []:
        if isinstance(record, dict) and "id" in record and _path(record) == path:
            found = {k: record.get(k) for k in RECORD_FIELDS if record.get(k) is not None}
            output = record.get("output")
            if record.get("type") == "llm" and isinstance(output, dict):
                found["text"] = output.get("content")
            return found
    live = ((view.progress or {}).get("finished") or {}).get(path) or {}
    return {k: live[k] for k in (*RECORD_FIELDS, "text") if live.get(k) is not None}
