"""Per-key circuit breakers, state in Redis so every worker sees it, else in-process.

closed → open after `failure_threshold` consecutive failures; open → half-open once
`recovery_timeout` has passed, and exactly one caller gets the probe (others are denied until
its lease ends); probe success → closed, probe failure → open again. Every transition happens
inside one Lua script (or one synchronous step in-process), so exactly one caller sees it and
reports it through `on_transition`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis

from activities.rate_limit import REDIS_ERRORS, REDIS_RETRY_SECONDS, RedisGate
from core.redis_keys import BREAKER_PREFIX, CLOSED, HALF_OPEN, OPEN, read_breaker_states

log = logging.getLogger(__name__)

# A probe that never reports (worker died) must not wedge the breaker half-open forever.
PROBE_LEASE_SECONDS = 120.0
_KEY_TTL_SECONDS = 7 * 24 * 3600

Op = Literal["before", "success", "failure", "release"]
OnTransition = Callable[[str, str, str, str], Awaitable[None]]


@dataclass(frozen=True)
class BreakerConfig:
    failure_threshold: int = 5
    recovery_timeout: float = 30.0


@dataclass(frozen=True)
class Admission:
    allowed: bool
    probe: bool = False
    retry_after: float = 0.0  # when denied: seconds until a call may be let through
    # Closed with no failures counted when admitted: a success then has nothing to reset, so
    # it is not reported (one Redis round trip per call instead of two on the healthy path).
    # A failure another caller records meanwhile is then reset by the next success that saw it.
    clean: bool = False


@dataclass
class _State:
    state: str = CLOSED
    failures: int = 0
    opened_until: float = 0.0
    probe_until: float = 0.0


def _step(s: _State, op: Op, now: float, cfg: BreakerConfig) -> tuple[str, float]:
    """Apply `op` to `s` in place; returns (verdict, delay). Mirrored by _BREAKER_LUA."""
    if op == "before":
        if s.state == CLOSED:
            return "allow", 0.0
        if s.state == OPEN and now < s.opened_until:
            return "deny", s.opened_until - now
        if s.state == HALF_OPEN and now < s.probe_until:
            return "deny", min(s.probe_until - now, cfg.recovery_timeout)
        s.state, s.probe_until = HALF_OPEN, now + PROBE_LEASE_SECONDS
        return "probe", 0.0
    if op == "success":
        # A success while open is a straggler from before the trip: it proves nothing.
        if s.state == HALF_OPEN or (s.state == CLOSED and s.failures):
            s.state, s.failures, s.opened_until, s.probe_until = CLOSED, 0, 0.0, 0.0
    elif op == "failure" and s.state != OPEN:
        s.failures += 1
        if s.state == HALF_OPEN or s.failures >= cfg.failure_threshold:
            s.state, s.opened_until, s.probe_until = OPEN, now + cfg.recovery_timeout, 0.0
    elif op == "release" and s.state == HALF_OPEN:
        s.probe_until = 0.0
    return "", 0.0


_BREAKER_LUA = """
local op = ARGV[1]
local now = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local recovery = tonumber(ARGV[4])
local lease = tonumber(ARGV[5])
local h = redis.call('HMGET', KEYS[1], 'state', 'failures', 'opened_until', 'probe_until')
local state = h[1] or 'closed'
local failures = tonumber(h[2]) or 0
local opened_until = tonumber(h[3]) or 0
local probe_until = tonumber(h[4]) or 0
local old = state
local verdict = ''
if op == 'before' then
  if state == 'closed' then return {old, state, 'allow', '0', tostring(failures)} end
  if state == 'open' and now < opened_until then
    return {old, state, 'deny', tostring(opened_until - now)}
  end
  if state == 'half_open' and now < probe_until then
    return {old, state, 'deny', tostring(math.min(probe_until - now, recovery))}
  end
  state = 'half_open'
  probe_until = now + lease
  verdict = 'probe'
elseif op == 'success' then
  if state == 'open' or (state == 'closed' and failures == 0) then return {old, state, '', '0'} end
  state = 'closed'; failures = 0; opened_until = 0; probe_until = 0
elseif op == 'failure' then
  if state == 'open' then return {old, state, '', '0'} end
  failures = failures + 1
  if state == 'half_open' or failures >= threshold then
    state = 'open'; opened_until = now + recovery; probe_until = 0
  end
elseif op == 'release' then
  if state ~= 'half_open' then return {old, state, '', '0'} end
  probe_until = 0
end
redis.call('HSET', KEYS[1], 'state', state, 'failures', failures,
  'opened_until', tostring(opened_until), 'probe_until', tostring(probe_until))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
return {old, state, verdict, '0'}
"""


class CircuitBreaker:
    def __init__(
        self,
        redis: Redis | None = None,
        *,
        prefix: str = BREAKER_PREFIX,
        clock: Callable[[], float] = time.time,
        on_transition: OnTransition | None = None,
        redis_retry_seconds: float = REDIS_RETRY_SECONDS,
    ) -> None:
        # Wall clock, not monotonic: opened_until is compared across hosts.
        self._clock = clock
        self._prefix = prefix
        self._on_transition = on_transition
        self._gate = RedisGate(redis, "circuit breaker", redis_retry_seconds, clock)
        self._script: Any = redis.register_script(_BREAKER_LUA) if redis is not None else None
        self._local: dict[str, _State] = {}

    async def before_call(self, key: str, cfg: BreakerConfig) -> Admission:
        verdict, delay, failures = await self._run(key, "before", cfg, "recovery timeout elapsed")
        if verdict == "deny":
            return Admission(False, retry_after=max(delay, 0.0))
        return Admission(True, probe=verdict == "probe", clean=verdict == "allow" and failures == 0)

    async def record_success(self, key: str, cfg: BreakerConfig) -> None:
        await self._run(key, "success", cfg, "call succeeded")

    async def record_failure(self, key: str, cfg: BreakerConfig, reason: str) -> None:
        await self._run(key, "failure", cfg, reason)

    async def release(self, key: str, cfg: BreakerConfig) -> None:
        """The probe ended without a verdict (cancelled, our own error): let another probe."""
        await self._run(key, "release", cfg, "probe released")

    async def snapshot(self) -> dict[str, dict[str, Any]]:
        """{key: {state, failures, opened_until}} from Redis when reachable, else this process."""
        if self._gate.redis is not None and self._gate.usable():
            try:
                return await read_breaker_states(self._gate.redis, self._prefix)
            except REDIS_ERRORS as exc:
                self._gate.failed(exc)
        return {
            key: {"state": s.state, "failures": s.failures, "opened_until": s.opened_until}
            for key, s in self._local.items()
        }

    async def _run(
        self, key: str, op: Op, cfg: BreakerConfig, reason: str
    ) -> tuple[str, float, int]:
        """(verdict, delay, failures counted: only known for an allowed 'before', else -1)."""
        now = self._clock()
        old = new = CLOSED
        result: tuple[str, float, int] | None = None
        if self._gate.usable():
            args = [op, now, cfg.failure_threshold, cfg.recovery_timeout]
            try:
                raw = await self._script(
                    keys=[self._prefix + key], args=[*args, PROBE_LEASE_SECONDS, _KEY_TTL_SECONDS]
                )
                old, new, verdict, waited, *counted = (_text(x) for x in raw)
                result = verdict, float(waited), int(counted[0]) if counted else -1
            except REDIS_ERRORS as exc:
                self._gate.failed(exc)
        if result is None:
            state = self._local.setdefault(key, _State())
            old = state.state
            verdict, delay = _step(state, op, now, cfg)
            result = verdict, delay, state.failures if verdict == "allow" else -1
            new = state.state
        if old != new:
            await self._notify(key, old, new, reason)
        return result

    async def _notify(self, key: str, old: str, new: str, reason: str) -> None:
        log.warning("circuit breaker %s: %s → %s (%s)", key, old, new, reason)
        if self._on_transition is None:
            return
        try:
            await self._on_transition(key, old, new, reason)
        except Exception:
            # An alert that can't be written must not fail the call that tripped it.
            log.exception("circuit breaker %s: on_transition callback failed", key)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
