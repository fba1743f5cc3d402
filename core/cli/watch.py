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
# How often a terminal follower reads progress and streamed text.
TURN_SECONDS = 0.2


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


class Follower:
    """Shows a running job in a terminal: a line per step as it starts and ends, and streamed
    text as it arrives. Each turn reads the run's progress first and the stored deltas second:
    a step's pieces are in Redis before its activity completes, so they are all printed before
    the line that says the step ended, never split by it."""

    def __init__(self, job_id: str, out: IO[str], redis: Any = None, progress: Any = None):
        from core.cli.render import StepLines, console

        self.job_id = job_id
        self.redis = redis
        self.progress = progress  # async () -> Progress | None
        self.printer = DeltaPrinter(out)
        self.lines = StepLines(console(out), stream=self.printer)
        self.after = "0"
        self.done = False
        # A turn and the final drain must not read the same deltas twice.
        self._lock = asyncio.Lock()

    async def turn(self) -> None:
        async with self._lock:
            if self.done:
                return
            seen = await self.progress() if self.progress is not None else None
            await self.deltas()
            if seen is not None:
                self.lines.update(dict(seen.steps), seen.finished)

    async def deltas(self) -> None:
        if self.redis is None:
            return
        for delta in await read_deltas(self.redis, self.job_id, self.after):
            self.printer.write(delta.path, delta.text, delta.attempt, delta.call)
            self.after = delta.id

    async def run(self) -> None:
        """Turn until cancelled."""
        while True:
            await self.turn()
            await asyncio.sleep(TURN_SECONDS)

    async def finish(self, records: list[dict[str, Any]]) -> None:
        """The job ended: what is stored and not printed yet, then what the records add."""
        async with self._lock:
            self.done = True
            await self.deltas()
            self.printer.close()
            self.lines.records(records)


@contextlib.asynccontextmanager
async def following(
    job_id: str, out: IO[str], *, redis_url: str | None, progress: Any = None
) -> AsyncIterator[Follower]:
    """A Follower turning in the background while the body runs."""
    redis = None
    if redis_url:
        import redis.asyncio as aioredis

        redis = aioredis.from_url(redis_url)
    follower = Follower(job_id, out, redis, progress)
    task = asyncio.create_task(follower.run())
    try:
        yield follower
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if redis is not None:
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
    row = await asyncio.to_thread(read_row, job_id)
    if row is None:
        out.write(f"job {job_id} not found in the mirror\n")
        return 2
    last_status: str | None = None
    async with following(job_id, out, redis_url=redis_url, progress=progress) as follower:
        while True:
            terminal = row.status in TERMINAL_STATUSES
            if terminal:  # every step's end before the job's
                await follower.finish((row.job_metadata or {}).get("steps") or [])
            if row.status != last_status:
                follower.printer.close()
                out.write(f"[{row.status}] {row.workflow_name} {row.workflow_version}\n")
                out.flush()
                last_status = row.status
            if terminal:
                break
            await asyncio.sleep(POLL_SECONDS)
            row = await asyncio.to_thread(read_row, job_id) or row
    if row.status != "completed" and row.error:
        out.write(f"error: {row.error.get('type')}: {row.error.get('message')}\n")
    return 0 if row.status == "completed" else 1
