"""The gateway's Temporal client, connected lazily so the API starts even if Temporal is late."""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import Client

from core.settings import Settings
from core.temporal import connect

log = logging.getLogger(__name__)


class TemporalUnavailable(RuntimeError):
    pass


class TemporalLink:
    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self._settings = settings
        self._client = client
        self._lock = asyncio.Lock()

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
