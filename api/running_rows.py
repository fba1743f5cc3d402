"""The mirror rows of unfinished jobs that clients are polling, kept fresh by one batched read.

Clients poll a running job every fraction of a second; reading its row for each poll costs the
gateway a thread hop and a query, and the database a query, hundreds of times a second for
rows that change two or three times in a job's life. Instead, the gateway remembers the rows of
the unfinished jobs it was asked about, and one background read (`refresh_once`, every
`refresh_every` seconds: their `updated_at` in one query, then only the rows that changed)
brings all of them up to date at once. A GET is answered from a row
only while its last refresh is at most `max_age` seconds old: if the refresh falls behind or
the database is down, reads go to the database again, as before. A row that became final is
dropped, so the next GET reads it in full.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from core import db
from core.contracts import TERMINAL_STATUSES
from core.models import Job

log = logging.getLogger(__name__)

# The largest IN (...) list one refresh query carries; more ids take several queries.
CHUNK = 500


@dataclass
class _Entry:
    row: Job
    checked_at: float  # when the read that produced `row` started (monotonic)
    polled_at: float  # last time a GET asked for it


class RunningRows:
    def __init__(
        self,
        *,
        refresh_every: float = 0.25,
        max_age: float = 1.0,
        idle_after: float = 30.0,
        max_entries: int = 20_000,
    ) -> None:
        self.refresh_every = refresh_every
        self.max_age = max_age
        self.idle_after = idle_after
        self.max_entries = max_entries
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, job_id: str) -> Job | None:
        """The job's unfinished row as last refreshed, or None (unknown, or not fresh)."""
        entry = self._entries.get(job_id)
        if entry is None:
            return None
        now = time.monotonic()
        if now - entry.checked_at > self.max_age:
            return None
        entry.polled_at = now
        return entry.row

    def put(self, row: Job, read_started: float) -> None:
        """Remember an unfinished row just read (`read_started`: monotonic time before the
        read). Final rows are not kept: they never change and are read once."""
        if row.status in TERMINAL_STATUSES:
            self._entries.pop(row.job_id, None)
            return
        entry = self._entries.get(row.job_id)
        if entry is None:
            if len(self._entries) >= self.max_entries:
                return  # full: this one is read per request, as without the cache
            self._entries[row.job_id] = _Entry(row, read_started, time.monotonic())
        elif read_started >= entry.checked_at:  # never replace a fresher read
            entry.row, entry.checked_at = row, read_started

    def drop(self, job_id: str) -> None:
        """Forget a job (it was just cancelled, decided, sent an event): read it anew."""
        self._entries.pop(job_id, None)

    def clear(self) -> None:
        self._entries.clear()

    async def refresh_once(self, engine: Engine) -> int:
        """Bring every row polled within `idle_after` up to date: one light query (per CHUNK
        ids) for their versions, then full reads of only those that changed. Returns how many
        rows were read in full."""
        now = time.monotonic()
        for job_id in [k for k, e in self._entries.items() if now - e.polled_at > self.idle_after]:
            del self._entries[job_id]
        ids = list(self._entries)
        read = 0
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            started = time.monotonic()
            versions = await asyncio.to_thread(db.job_versions, engine, chunk)
            changed = [
                job_id
                for job_id in chunk
                if job_id in self._entries
                and versions.get(job_id) != self._entries[job_id].row.updated_at
            ]
            rows = await asyncio.to_thread(db.get_jobs, engine, changed) if changed else {}
            read += len(rows)
            for job_id in chunk:
                entry = self._entries.get(job_id)
                if entry is None or entry.checked_at > started:
                    continue  # dropped, or read afresh by a GET, while we read
                if job_id not in versions:
                    del self._entries[job_id]  # gone from the mirror: read it per request
                elif job_id in changed:
                    row = rows.get(job_id)
                    if row is None or row.status in TERMINAL_STATUSES:
                        del self._entries[job_id]
                    else:
                        entry.row, entry.checked_at = row, started
                else:
                    entry.checked_at = started  # unchanged since it was read
        return read

    async def run_forever(self, engine: Engine) -> None:
        while True:
            try:
                await self.refresh_once(engine)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down: polls read it (and fail) directly
                log.warning("refreshing polled job rows failed: %s", type(exc).__name__)
                self.clear()
            await asyncio.sleep(self.refresh_every)
