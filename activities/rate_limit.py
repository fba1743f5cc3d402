"""Per-key token buckets: Redis when given so every worker shares them, else in-process.

`acquire` never waits: it answers 0 when a token was taken, else the seconds until one frees,
and the caller turns that into a retryable RATE_LIMITED error for Temporal to schedule. A Redis
failure drops to the in-process buckets for a while (see RedisGate) instead of failing calls.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.redaction import redact_text
from core.redis_keys import RATE_LIMIT_PREFIX

log = logging.getLogger(__name__)

REDIS_RETRY_SECONDS = 30.0
REDIS_ERRORS = (RedisError, OSError, TimeoutError)


class RedisGate:
    """Whether to try Redis now; after a failure, stay away for `retry_seconds` (log once)."""

    def __init__(
        self, redis: Redis | None, what: str, retry_seconds: float, clock: Callable[[], float]
    ) -> None:
        self.redis = redis
        self._what = what
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._down_until = 0.0

    def usable(self) -> bool:
        return self.redis is not None and self._clock() >= self._down_until

    def failed(self, exc: BaseException) -> None:
        if self._clock() >= self._down_until:
            log.warning(
                "%s: Redis unavailable, using in-process state for %.0fs: %s",
                self._what,
                self._retry_seconds,
                redact_text(f"{type(exc).__name__}: {exc}"),
            )
        self._down_until = self._clock() + self._retry_seconds


@dataclass(frozen=True)
class RateLimitSpec:
    rate: float  # tokens per second
    burst: int  # bucket size: calls allowed back to back

    @classmethod
    def per_second(cls, rps: float, burst: int | None = None) -> RateLimitSpec:
        return cls(rate=rps, burst=burst or max(1, math.ceil(rps)))


# Returned as a string: Redis truncates Lua numbers to integers on the way out.
_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(h[1])
local ts = tonumber(h[2])
if tokens == nil or ts == nil then tokens = burst; ts = now end
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate); ts = now end
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return tostring(wait)
"""


class RateLimiter:
    def __init__(
        self,
        redis: Redis | None = None,
        *,
        prefix: str = RATE_LIMIT_PREFIX,
        clock: Callable[[], float] = time.time,
        redis_retry_seconds: float = REDIS_RETRY_SECONDS,
    ) -> None:
        # Wall clock, not monotonic: the buckets in Redis are shared between hosts.
        self._clock = clock
        self._prefix = prefix
        self._gate = RedisGate(redis, "rate limiter", redis_retry_seconds, clock)
        self._script: Any = redis.register_script(_BUCKET_LUA) if redis is not None else None
        self._local: dict[str, tuple[float, float]] = {}

    async def acquire(self, key: str, spec: RateLimitSpec) -> float:
        """0.0 when a call may go now, else seconds until the next token."""
        now = self._clock()
        if self._gate.usable():
            ttl = max(1, math.ceil(spec.burst / spec.rate) + 1)
            try:
                raw = await self._script(
                    keys=[self._prefix + key], args=[spec.rate, spec.burst, now, ttl]
                )
                return float(raw)
            except REDIS_ERRORS as exc:
                self._gate.failed(exc)
        return self._local_acquire(key, spec, now)

    def _local_acquire(self, key: str, spec: RateLimitSpec, now: float) -> float:
        tokens, ts = self._local.get(key, (float(spec.burst), now))
        if now > ts:
            tokens, ts = min(spec.burst, tokens + (now - ts) * spec.rate), now
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / spec.rate
        self._local[key] = (tokens, ts)
        return wait
