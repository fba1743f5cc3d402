"""Following a job from the terminal: `llmflow run --wait` prints a streamed step's text as it
arrives, and `llmflow jobs watch <job_id>` follows any job (status, steps, streamed text) from
the mirror and Redis, with the gateway down too."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import IO, Any

from core.contracts import TERMINAL_STATUSES
from core.llm_stream import read_deltas

POLL_SECONDS = 0.5


class DeltaPrinter:
    """Writes deltas as one running text per step; a retried attempt (or a repair call)
    starts over on a new line, so the last block printed is the step's text."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.current: tuple[str, int, int] | None = None

    def write(self, path: str, text: str, attempt: int, call: int) -> None:
        key = (path, attempt, call)
        if key != self.current:
            if self.current is not None:
                self.out.write("\n")
            again = self.current is not None and self.current[0] == path
            label = f"attempt {attempt}, call {call}" if again else "streaming"
            self.out.write(f"── {path} ({label}) ──\n")
            self.current = key
        self.out.write(text)
        self.out.flush()

    def close(self) -> None:
        if self.current is not None:
            self.out.write("\n")
            self.out.flush()
            self.current = None


async def stream_text(redis: Any, job_id: str, printer: DeltaPrinter) -> None:
    """Print the job's deltas until cancelled."""
    after = "0"
    while True:
        found = await read_deltas(redis, job_id, after, block_ms=int(POLL_SECONDS * 1000))
        for delta in found:
            printer.write(delta.path, delta.text, delta.attempt, delta.call)
        if found:
            after = found[-1].id
        else:
            await asyncio.sleep(0.05)  # Redis down answers at once: don't spin


async def drain_text(
    redis: Any, job_id: str, printer: DeltaPrinter, task: asyncio.Task[None]
) -> None:
    """Stop following and print what is stored but not printed yet (the step's last pieces
    land in Redis before the job's result)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    printer.close()


@contextlib.asynccontextmanager
async def printing_deltas(redis_url: str | None, job_id: str, out: IO[str]) -> AsyncIterator[None]:
    """While the body runs, print the job's streamed text to `out` (nothing without Redis)."""
    if not redis_url:
        yield
        return
    import redis.asyncio as aioredis

    redis = aioredis.from_url(redis_url)
    printer = DeltaPrinter(out)
    task = asyncio.create_task(stream_text(redis, job_id, printer))
    try:
        yield
        # The result is in; give the reader one more turn for pieces stored just before it.
        await asyncio.sleep(POLL_SECONDS)
    finally:
        await drain_text(redis, job_id, printer, task)
        await redis.aclose()


async def watch_job(
    job_id: str,
    *,
    read_row: Any,
    redis_url: str | None,
    out: IO[str],
    progress: Any = None,
) -> int:
    """Follow a job in the mirror until it ends: 0 completed, 1 failed/cancelled/timed out,
    2 unknown job. `read_row(job_id)` returns the mirror row or None; `progress()` (optional)
    the run's Progress from Temporal, for a line per step as it starts and ends."""
    from core.cli_render import StepLines, console

    row = await asyncio.to_thread(read_row, job_id)
    if row is None:
        out.write(f"job {job_id} not found in the mirror\n")
        return 2
    last_status: str | None = None
    lines = StepLines(console(out))
    async with printing_deltas(redis_url, job_id, out):
        while True:
            if row is not None and row.status != last_status:
                out.write(f"[{row.status}] {row.workflow_name} {row.workflow_version}\n")
                out.flush()
                last_status = row.status
            if progress is not None:
                seen = await progress()
                if seen is not None:
                    lines.update(dict(seen.steps), seen.finished)
            if row is not None and row.status in TERMINAL_STATUSES:
                lines.records((row.job_metadata or {}).get("steps") or [])
                break
            await asyncio.sleep(POLL_SECONDS)
            row = await asyncio.to_thread(read_row, job_id)
    if row.status != "completed" and row.error:
        out.write(f"error: {row.error.get('type')}: {row.error.get('message')}\n")
    return 0 if row.status == "completed" else 1
