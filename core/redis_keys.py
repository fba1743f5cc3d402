"""Where the workers keep shared state in Redis: the response cache, rate limits, breakers.

The worker's activities write these keys; the gateway clears the cache (DELETE /api/v1/cache)
and reports breaker states (/health/detailed). Both take the layout from here, so the gateway
never imports the activities.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from redis.asyncio import Redis

KEY_PREFIX = "llmflow:"
CACHE_PREFIX = f"{KEY_PREFIX}cache:"

# A breaker's state, as stored in its hash's `state` field.
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


def rate_limit_prefix(base: str = KEY_PREFIX) -> str:
    return f"{base}ratelimit:"


def breaker_prefix(base: str = KEY_PREFIX) -> str:
    return f"{base}breaker:"


RATE_LIMIT_PREFIX = rate_limit_prefix()
BREAKER_PREFIX = breaker_prefix()


def cache_key(service: str, operation: str, request: Any) -> str:
    """Stable key for one call: readable service/operation + sha256 of the normalized request.

    `request` must not hold credentials; the activity passes the request without its key.
    """
    canonical = json.dumps(
        {"service": service, "operation": operation, "request": request},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return f"{service}.{operation}:{hashlib.sha256(canonical.encode()).hexdigest()}"


async def read_breaker_states(
    redis: Redis, prefix: str = BREAKER_PREFIX
) -> dict[str, dict[str, Any]]:
    """{key: {state, failures, opened_until}} of every breaker in Redis; Redis errors propagate."""
    out: dict[str, dict[str, Any]] = {}
    async for name in redis.scan_iter(match=prefix + "*", count=500):
        raw = await redis.hgetall(name)
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if not fields:
            continue
        out[_text(name)[len(prefix) :]] = {
            "state": fields.get("state", CLOSED),
            "failures": int(float(fields.get("failures", 0))),
            "opened_until": float(fields.get("opened_until", 0)),
        }
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
