"""The gateway's Temporal client, connected lazily so the API starts even if Temporal is late."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from temporalio.client import Client

from core.settings import Settings
from core.temporal import connect

log = logging.getLogger(__name__)


class TemporalUnavailable(RuntimeError):
    pass


class TtlCache:
    """A small time-bounded cache (per gateway process) of what was read from Temporal."""

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: str, value: Any) -> None:
        if len(self._entries) >= self.max_entries:
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (time.monotonic() + self.ttl, value)

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)


# How stale a running job's live status and progress may be on GET /jobs/{id}.
LIVE_TTL_SECONDS = 2.0


class TemporalLink:
    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self._settings = settings
        self._client = client
        self._lock = asyncio.Lock()
        self.live_cache = TtlCache(LIVE_TTL_SECONDS)

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
