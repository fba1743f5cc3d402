"""Rate limits + circuit breakers around outside calls, one object per worker.

    async with resilience.guard("service:weatherapi", rate_limit=spec, breaker=cfg):
        ...  # the HTTP call

A denied call raises at once with a retryable error whose next_retry_delay says when to come
back: RATE_LIMITED when the bucket is empty, UPSTREAM_ERROR when the breaker is open. Nothing
here sleeps or retries; Temporal schedules the next attempt.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from temporalio.exceptions import ApplicationError

from activities.breaker import Admission, BreakerConfig, CircuitBreaker, OnTransition
from activities.http_errors import current_attempt
from activities.rate_limit import REDIS_RETRY_SECONDS, RateLimiter, RateLimitSpec
from core.errors import ErrorContext, ErrorType
from core.redis_keys import KEY_PREFIX, breaker_prefix, rate_limit_prefix

__all__ = [
    "BreakerConfig",
    "RateLimitSpec",
    "Resilience",
    "counts_as_failure",
    "service_policy",
]

# Only signs the service itself is unwell trip the breaker: never 4xx, never rate limits.
BREAKER_FAILURE_TYPES = frozenset(
    {ErrorType.UPSTREAM_ERROR, ErrorType.TIMEOUT, ErrorType.CONNECTION_ERROR}
)


def counts_as_failure(err: ApplicationError) -> bool:
    return not err.non_retryable and err.type in BREAKER_FAILURE_TYPES


def service_policy(service: Any) -> tuple[RateLimitSpec | None, BreakerConfig]:
    """Rate limit and breaker settings of a workflow_defs.services.ServiceDef."""
    limit = None
    rl = getattr(service, "rate_limit", None)
    if rl is not None and rl.requests_per_second:
        limit = RateLimitSpec.per_second(rl.requests_per_second, rl.burst)
    cfg = BreakerConfig()
    br = getattr(service, "breaker", None)
    if br is not None:
        cfg = BreakerConfig(br.failure_threshold, br.recovery_timeout)
    return limit, cfg


class Resilience:
    def __init__(
        self,
        redis: Redis | None = None,
        *,
        prefix: str = KEY_PREFIX,
        clock: Callable[[], float] = time.time,
        on_transition: OnTransition | None = None,
        default_breaker: BreakerConfig | None = None,
        redis_retry_seconds: float = REDIS_RETRY_SECONDS,
    ) -> None:
        self.default_breaker = default_breaker or BreakerConfig()
        self.limiter = RateLimiter(
            redis,
            prefix=rate_limit_prefix(prefix),
            clock=clock,
            redis_retry_seconds=redis_retry_seconds,
        )
        self.breaker = CircuitBreaker(
            redis,
            prefix=breaker_prefix(prefix),
            clock=clock,
            on_transition=on_transition,
            redis_retry_seconds=redis_retry_seconds,
        )

    async def snapshot(self) -> dict[str, dict[str, Any]]:
        return await self.breaker.snapshot()

    @asynccontextmanager
    async def guard(
        self,
        key: str,
        *,
        rate_limit: RateLimitSpec | None = None,
        breaker: BreakerConfig | None = None,
        details: dict[str, Any] | None = None,
    ) -> AsyncIterator[None]:
        cfg = breaker or self.default_breaker
        admission = await self.admit(key, rate_limit=rate_limit, breaker=cfg, details=details)
        try:
            yield
        except ApplicationError as err:
            if counts_as_failure(err):
                await self.breaker.record_failure(key, cfg, f"{err.type}: {err.message}"[:300])
            else:
                # A 4xx or 429 is still an answer: the service is up.
                await self.breaker.record_success(key, cfg)
            raise
        except BaseException:
            if admission.probe:
                await self.breaker.release(key, cfg)
            raise
        if not admission.clean:
            await self.breaker.record_success(key, cfg)

    async def admit(
        self,
        key: str,
        *,
        rate_limit: RateLimitSpec | None,
        breaker: BreakerConfig,
        details: dict[str, Any] | None = None,
    ) -> Admission:
        """Breaker first, so a call that will fail fast doesn't spend a rate-limit token."""
        admission = await self.breaker.before_call(key, breaker)
        if not admission.allowed:
            raise _denied(
                ErrorType.UPSTREAM_ERROR,
                f"circuit breaker for {key} is open: failing fast until the service recovers",
                admission.retry_after,
                details,
                "the service is failing; Temporal retries once the breaker lets calls through",
            )
        if rate_limit is not None:
            wait = await self.limiter.acquire(key, rate_limit)
            if wait > 0:
                if admission.probe:
                    await self.breaker.release(key, breaker)
                raise _denied(
                    ErrorType.RATE_LIMITED,
                    f"rate limit for {key} reached ({rate_limit.rate:g}/s)",
                    wait,
                    details,
                    "lower the request rate or raise rate_limit in services.json",
                )
        return admission


def _denied(
    kind: ErrorType, message: str, delay: float, details: dict[str, Any] | None, hint: str
) -> ApplicationError:
    return ErrorContext.of(
        kind,
        message,
        retryable=True,
        # Never 0: ErrorContext drops a zero delay and Temporal would use its backoff instead.
        retry_after=max(delay, 0.05),
        attempt=current_attempt(),
        details={**(details or {}), "suggestions": [hint]},
    ).to_application_error()
