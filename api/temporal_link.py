"""The gateway's Temporal client, connected lazily so the API starts even if Temporal is late."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from temporalio.client import Client

from api.running_rows import RunningRows
from core.settings import Settings
from core.temporal import connect

log = logging.getLogger(__name__)


class TemporalUnavailable(RuntimeError):
    pass


class TtlCache:
    """A small time-bounded cache (per gateway process) of what was read from Temporal.

    With `reads_per_second`, an entry lives `max(ttl, live entries / reads_per_second)`: however
    many jobs are being read at once, refreshing them all costs Temporal about that many reads a
    second (each a query the run's worker answers), and each job's state is at most that stale.
    """

    def __init__(
        self,
        ttl_seconds: float,
        max_entries: int = 10_000,
        *,
        reads_per_second: float | None = None,
    ) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.reads_per_second = reads_per_second
        self._entries: dict[str, tuple[float, Any]] = {}
        self._purged_at = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Any:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def current_ttl(self) -> float:
        if not self.reads_per_second:
            return self.ttl
        return max(self.ttl, len(self._entries) / self.reads_per_second)

    def put(self, key: str, value: Any) -> None:
        now = time.monotonic()
        if len(self._entries) >= self.max_entries or now - self._purged_at > 1.0:
            self._purged_at = now
            self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (now + self.current_ttl(), value)

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)


# How stale a running job's live status and progress may be on GET /jobs/{id}, at least; with
# many running jobs polled at once, each is refreshed less often, so that one gateway sends
# Temporal at most about LIVE_READS_PER_SECOND progress reads a second.
LIVE_TTL_SECONDS = 2.0
LIVE_READS_PER_SECOND = 20.0


class TemporalLink:
    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self._settings = settings
        self._client = client
        self._lock = asyncio.Lock()
        self.live_cache = TtlCache(LIVE_TTL_SECONDS, reads_per_second=LIVE_READS_PER_SECOND)
        # Mirror rows of polled unfinished jobs, refreshed in one batch (the app's lifespan
        # runs `rows.run_forever`; without it they are never fresh and every read goes to the
        # database).
        self.rows = RunningRows()

    async def client(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await connect(self._settings)
                except Exception as exc:
                    raise TemporalUnavailable(
                        f"Temporal at {self._settings.temporal_address} is unreachable: {exc}"
                    ) from exc
        return self._client
