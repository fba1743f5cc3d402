"""Server-Sent Events for one job: status changes, steps starting and finishing, the end.

Built on what the gateway already reads (the mirror row plus the interpreter's `progress`
query), polled twice a second while the job runs; a comment line every 15 s keeps proxies
from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.engine import Engine

from api import job_service
from api.schemas import JobView
from api.temporal_link import TemporalLink
from core.contracts import TERMINAL_STATUSES
from core.settings import Settings

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0


def sse(event: str, data: Any, event_id: int) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data, default=str)}\n\n"


async def follow(
    first: JobView, *, settings: Settings, engine: Engine, temporal: TemporalLink
) -> AsyncIterator[str]:
    event_id = 0
    last_status: str | None = None
    last_steps: dict[str, str] = {}
    last_waiting: list[Any] = []
    last_sent = time.monotonic()
    view = first
    while True:
        if view.status != last_status:
            event_id += 1
            yield sse("status", {"job_id": view.job_id, "status": view.status}, event_id)
            last_status = view.status
            last_sent = time.monotonic()
        if view.waiting != last_waiting and view.status not in TERMINAL_STATUSES:
            # Approvals and awaited events: what the job waits for now (an empty list: no more).
            event_id += 1
            yield sse("waiting", {"job_id": view.job_id, "waiting": view.waiting}, event_id)
            last_waiting = list(view.waiting)
            last_sent = time.monotonic()
        steps = _step_statuses(view)
        for step_id, state in steps.items():
            before = last_steps.get(step_id, "pending")
            if state == before:
                continue
            if state == "running" or (before == "pending" and state not in ("pending", "skipped")):
                event_id += 1
                yield sse(
                    "step", {"step_id": step_id, "path": step_id, "phase": "started"}, event_id
                )
            if state not in ("pending", "running"):
                event_id += 1
                record = _record(view, step_id)
                yield sse(
                    "step",
                    {
                        "step_id": step_id,
                        "path": step_id,
                        "phase": "finished",
                        "status": state,
                        **record,
                    },
                    event_id,
                )
            last_sent = time.monotonic()
        last_steps = steps
        if view.status in TERMINAL_STATUSES:
            event_id += 1
            yield sse("job", view.model_dump(mode="json"), event_id)
            return
        if time.monotonic() - last_sent > KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(POLL_SECONDS)
        try:
            view = await job_service.get_job_view(
                view.job_id, settings=settings, engine=engine, temporal=temporal
            )
        except job_service.NotFound:
            return


def _step_statuses(view: JobView) -> dict[str, str]:
    if view.progress and view.progress.get("steps"):
        return dict(view.progress["steps"])
    records = (view.metadata or {}).get("steps") or []
    return {_path(r): r["status"] for r in records if isinstance(r, dict) and "id" in r}


def _path(record: dict[str, Any]) -> str:
    # Steps are named by their path in the step tree (a top-level step's path is its id).
    return str(record.get("path") or record["id"])


def _record(view: JobView, step_id: str) -> dict[str, Any]:
    for record in (view.metadata or {}).get("steps") or []:
        if isinstance(record, dict) and "id" in record and _path(record) == step_id:
            return {
                k: record.get(k)
                for k in ("attempts", "duration_ms", "error")
                if record.get(k) is not None
            }
    return {}
