"""Response cache for external API calls: Redis when given, else in-process.

Redis is an optimisation, never a dependency: when it errors the cache carries on in-process
(and retries Redis after a pause), so a Redis outage costs cache hits, not jobs. Values are
stored as JSON in both backends, so a hit is always a fresh copy the caller may mutate.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.redaction import redact_text
from core.redis_keys import CACHE_PREFIX

log = logging.getLogger(__name__)

# After a Redis failure, stay in-process this long before trying Redis again: a dead Redis
# must not add a connect attempt to every call.
REDIS_RETRY_SECONDS = 30.0
_REDIS_ERRORS = (RedisError, OSError, TimeoutError)


class ResponseCache:
    def __init__(
        self,
        redis: Redis | None = None,
        *,
        prefix: str = CACHE_PREFIX,
        max_local_entries: int = 2048,
        redis_retry_seconds: float = REDIS_RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._max_local = max_local_entries
        self._retry_seconds = redis_retry_seconds
        self._clock = clock
        self._local: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._redis_down_until = 0.0
        self._hits = 0
        self._misses = 0

    async def get(self, key: str) -> Any | None:
        if self._use_redis():
            raw = await self._redis_get(key)
            if raw is _FAILED:
                raw = self._local_get(key)
        else:
            raw = self._local_get(key)
        value = _decode(raw) if isinstance(raw, str | bytes) else None
        if value is None:
            self._misses += 1
        else:
            self._hits += 1
        return value

    async def set(self, key: str, value: Any, ttl: int) -> None:
        if ttl <= 0 or value is None:
            return
        encoded = json.dumps(value, separators=(",", ":"), default=str)
        if self._use_redis():
            try:
                await self._redis.set(self._prefix + key, encoded, ex=int(ttl))  # type: ignore[union-attr]
                return
            except _REDIS_ERRORS as exc:
                self._redis_failed(exc)
        self._local_set(key, encoded, ttl)

    def stats(self) -> dict[str, int]:
        return {"hits": self._hits, "misses": self._misses}

    async def clear(self) -> None:
        """Drop every cached response (DELETE /api/v1/cache); only this cache's prefix."""
        self._local.clear()
        if self._redis is None:
            return
        try:
            batch: list[Any] = []
            async for name in self._redis.scan_iter(match=self._prefix + "*", count=500):
                batch.append(name)
                if len(batch) >= 500:
                    await self._redis.delete(*batch)
                    batch.clear()
            if batch:
                await self._redis.delete(*batch)
        except _REDIS_ERRORS as exc:
            self._redis_failed(exc)

    # -- Redis ----------------------------------------------------------------------------

    def _use_redis(self) -> bool:
        return self._redis is not None and self._clock() >= self._redis_down_until

    async def _redis_get(self, key: str) -> Any:
        try:
            return await self._redis.get(self._prefix + key)  # type: ignore[union-attr]
        except _REDIS_ERRORS as exc:
            self._redis_failed(exc)
            return _FAILED

    def _redis_failed(self, exc: BaseException) -> None:
        if self._clock() >= self._redis_down_until:
            log.warning(
                "response cache: Redis unavailable, using in-process cache for %.0fs: %s",
                self._retry_seconds,
                redact_text(f"{type(exc).__name__}: {exc}"),
            )
        self._redis_down_until = self._clock() + self._retry_seconds

    # -- in-process -----------------------------------------------------------------------

    def _local_get(self, key: str) -> str | None:
        entry = self._local.get(key)
        if entry is None:
            return None
        expires_at, encoded = entry
        if self._clock() >= expires_at:
            del self._local[key]
            return None
        return encoded

    def _local_set(self, key: str, encoded: str, ttl: int) -> None:
        self._local[key] = (self._clock() + ttl, encoded)
        self._local.move_to_end(key)
        if len(self._local) > self._max_local:
            now = self._clock()
            for stale in [k for k, (exp, _) in self._local.items() if exp <= now]:
                del self._local[stale]
            while len(self._local) > self._max_local:
                self._local.popitem(last=False)


_FAILED = object()


def _decode(raw: str | bytes) -> Any | None:
    try:
        return json.loads(raw)
    except ValueError:
        return None
