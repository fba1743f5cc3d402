"""Rate limiter and circuit breaker, in-process and through a real Redis (TEST_REDIS_URL)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.breaker import BreakerConfig
from activities.cache import ResponseCache
from activities.external_api import ExternalApiActivities, ExternalApiInput
from activities.http_errors import error_for_status, error_for_transport, new_http_client
from activities.rate_limit import RateLimitSpec
from activities.resilience import Resilience
from core.settings import Settings
from tests.fakes.http_server import FakeHTTPServer, Response
from workflow_defs.services import load_services

REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
CFG = BreakerConfig(failure_threshold=3, recovery_timeout=30.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def backend(request) -> AsyncIterator[aioredis.Redis | None]:
    if request.param == "memory":
        yield None
        return
    if not REDIS_URL:
        pytest.skip("TEST_REDIS_URL not set")
    client = aioredis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(backend) -> AsyncIterator[str]:
    value = f"test:{uuid.uuid4().hex}:"
    yield value
    if backend is not None:
        names = [n async for n in backend.scan_iter(match=value + "*")]
        if names:
            await backend.delete(*names)


def make(backend: Any, prefix: str, clock: Clock, **kwargs: Any) -> Resilience:
    return Resilience(backend, prefix=prefix, clock=clock, **kwargs)


def upstream_503() -> ApplicationError:
    return error_for_status(503, body="down", what="svc")


async def fail(res: Resilience, key: str, err: Exception, cfg: BreakerConfig = CFG) -> None:
    with pytest.raises(type(err)):
        async with res.guard(key, breaker=cfg):
            raise err


async def succeed(res: Resilience, key: str, cfg: BreakerConfig = CFG) -> None:
    async with res.guard(key, breaker=cfg):
        pass


async def denied(res: Resilience, key: str, **kwargs: Any) -> ApplicationError:
    entered = False
    with pytest.raises(ApplicationError) as info:
        async with res.guard(key, **kwargs):
            entered = True
    assert not entered
    return info.value


async def state(res: Resilience, key: str) -> str:
    # Redis holds no hash for a breaker that never failed: absent means closed.
    return (await res.snapshot()).get(key, {"state": "closed"})["state"]


def delay(err: ApplicationError) -> float:
    assert err.next_retry_delay is not None
    return err.next_retry_delay.total_seconds()


# -- rate limits ------------------------------------------------------------------------------


async def test_limiter_allows_burst_then_rate_limits_and_refills(backend, prefix) -> None:
    clock = Clock()
    res = make(backend, prefix, clock)
    spec = RateLimitSpec.per_second(2)  # burst 2
    for _ in range(2):
        async with res.guard("service:a", rate_limit=spec):
            pass
    err = await denied(res, "service:a", rate_limit=spec)
    assert err.type == "RATE_LIMITED" and not err.non_retryable
    assert delay(err) == pytest.approx(0.5, abs=0.01)
    clock.now += 0.25
    assert delay(await denied(res, "service:a", rate_limit=spec)) == pytest.approx(0.25, abs=0.01)
    clock.now += 0.25
    async with res.guard("service:a", rate_limit=spec):
        pass
    # Other keys have their own bucket.
    async with res.guard("service:b", rate_limit=spec):
        pass


async def test_rate_limited_call_does_not_count_against_breaker(backend, prefix) -> None:
    res = make(backend, prefix, Clock())
    spec = RateLimitSpec.per_second(1)
    async with res.guard("k", rate_limit=spec, breaker=CFG):
        pass
    for _ in range(5):
        await denied(res, "k", rate_limit=spec, breaker=CFG)
    for _ in range(5):
        await fail(res, "k", error_for_status(429, what="svc"))
    assert await state(res, "k") == "closed"


# -- breaker ----------------------------------------------------------------------------------


async def test_breaker_opens_after_threshold_and_fails_fast(backend, prefix) -> None:
    clock = Clock()
    calls: list[tuple[str, str, str]] = []

    async def on_transition(key: str, old: str, new: str, reason: str) -> None:
        calls.append((key, old, new))

    res = make(backend, prefix, clock, on_transition=on_transition)
    await fail(res, "svc", upstream_503())
    await fail(res, "svc", error_for_transport(_timeout(), what="svc"))
    assert await state(res, "svc") == "closed"
    assert calls == []
    await fail(res, "svc", upstream_503())
    assert calls == [("svc", "closed", "open")]
    clock.now += 10
    err = await denied(res, "svc", breaker=CFG)
    assert err.type == "UPSTREAM_ERROR" and not err.non_retryable
    assert "circuit breaker" in err.message and "open" in err.message
    assert delay(err) == pytest.approx(20, abs=0.01)
    snap = (await res.snapshot())["svc"]
    assert snap["state"] == "open" and snap["failures"] == 3
    assert snap["opened_until"] == pytest.approx(clock.now + 20)


async def test_breaker_ignores_4xx_and_success_resets_count(backend, prefix) -> None:
    res = make(backend, prefix, Clock())
    for status in (400, 404, 422, 401, 429):
        await fail(res, "svc", error_for_status(status, what="svc"))
    await fail(res, "svc", upstream_503())
    await fail(res, "svc", upstream_503())
    await succeed(res, "svc")
    await fail(res, "svc", upstream_503())
    await fail(res, "svc", upstream_503())
    snap = (await res.snapshot())["svc"]
    assert snap["state"] == "closed" and snap["failures"] == 2


async def test_healthy_call_asks_breaker_once_and_counts_still_reset(backend, prefix) -> None:
    """A call admitted while the breaker is closed with no failures reports no success (there
    is nothing to reset): one breaker operation per healthy call. A failure recorded while it
    ran is reset by the next success, whose admission saw the count."""
    res = make(backend, prefix, Clock())
    ops: list[str] = []
    run = res.breaker._run

    async def counting(key: str, op: Any, cfg: BreakerConfig, reason: str) -> Any:
        ops.append(op)
        return await run(key, op, cfg, reason)

    res.breaker._run = counting  # type: ignore[method-assign]
    await succeed(res, "svc")
    assert ops == ["before"]
    async with res.guard("svc", breaker=CFG):
        await fail(res, "svc", upstream_503())  # another caller fails meanwhile
    assert (await res.snapshot())["svc"]["failures"] == 1
    ops.clear()
    await succeed(res, "svc")
    assert ops == ["before", "success"]
    assert (await res.snapshot())["svc"]["failures"] == 0


async def trip(res: Resilience, key: str) -> None:
    for _ in range(CFG.failure_threshold):
        await fail(res, key, upstream_503())


async def test_half_open_lets_one_probe_and_success_closes(backend, prefix) -> None:
    clock = Clock()
    seen: list[tuple[str, str]] = []

    async def on_transition(key: str, old: str, new: str, reason: str) -> None:
        seen.append((old, new))

    res = make(backend, prefix, clock, on_transition=on_transition)
    await trip(res, "svc")
    clock.now += 30
    probe_started, finish = asyncio.Event(), asyncio.Event()

    async def probe() -> None:
        async with res.guard("svc", breaker=CFG):
            probe_started.set()
            await finish.wait()

    task = asyncio.create_task(probe())
    await probe_started.wait()
    others = await asyncio.gather(*(denied(res, "svc", breaker=CFG) for _ in range(5)))
    assert all(e.type == "UPSTREAM_ERROR" for e in others)
    finish.set()
    await task
    assert seen == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    await succeed(res, "svc")
    assert (await res.snapshot())["svc"] == {"state": "closed", "failures": 0, "opened_until": 0}


async def test_concurrent_callers_get_exactly_one_probe(backend, prefix) -> None:
    clock = Clock()
    res = make(backend, prefix, clock)
    await trip(res, "svc")
    clock.now += 31
    entered = 0
    release = asyncio.Event()

    async def caller() -> str:
        nonlocal entered
        try:
            async with res.guard("svc", breaker=CFG):
                entered += 1
                await release.wait()
        except ApplicationError:
            return "denied"
        return "probe"

    tasks = [asyncio.create_task(caller()) for _ in range(8)]
    await asyncio.sleep(0.05)
    release.set()
    results = await asyncio.gather(*tasks)
    assert results.count("probe") == 1 and entered == 1


async def test_probe_failure_reopens(backend, prefix) -> None:
    clock = Clock()
    res = make(backend, prefix, clock)
    await trip(res, "svc")
    clock.now += 30
    await fail(res, "svc", upstream_503())
    err = await denied(res, "svc", breaker=CFG)
    assert delay(err) == pytest.approx(30, abs=0.01)
    assert await state(res, "svc") == "open"


async def test_cancelled_probe_releases_it(backend, prefix) -> None:
    clock = Clock()
    res = make(backend, prefix, clock)
    await trip(res, "svc")
    clock.now += 30
    with pytest.raises(asyncio.CancelledError):
        async with res.guard("svc", breaker=CFG):
            raise asyncio.CancelledError
    await succeed(res, "svc")  # the next caller gets the probe
    assert await state(res, "svc") == "closed"


async def test_callback_errors_never_fail_calls(backend, prefix) -> None:
    async def broken(*args: str) -> None:
        raise RuntimeError("db down")

    res = make(backend, prefix, Clock(), on_transition=broken)
    await trip(res, "svc")
    assert await state(res, "svc") == "open"


@pytest.mark.skipif(not REDIS_URL, reason="TEST_REDIS_URL not set")
async def test_two_instances_share_state_through_redis(prefix) -> None:
    clock = Clock()
    a_client, b_client = aioredis.from_url(REDIS_URL), aioredis.from_url(REDIS_URL)
    try:
        a, b = make(a_client, prefix, clock), make(b_client, prefix, clock)
        await fail(a, "svc", upstream_503())
        await fail(b, "svc", upstream_503())
        await fail(a, "svc", upstream_503())
        err = await denied(b, "svc", breaker=CFG)
        assert "circuit breaker" in err.message
        spec = RateLimitSpec.per_second(1)
        async with a.guard("rl", rate_limit=spec):
            pass
        assert (await denied(b, "rl", rate_limit=spec)).type == "RATE_LIMITED"
        clock.now += 30
        await succeed(b, "svc")
        assert await state(a, "svc") == "closed"
    finally:
        names = [n async for n in a_client.scan_iter(match=prefix + "*")]
        if names:
            await a_client.delete(*names)
        await a_client.aclose()
        await b_client.aclose()


async def test_unreachable_redis_falls_back_in_process(caplog) -> None:
    client = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        clock = Clock()
        res = Resilience(client, prefix="test:", clock=clock)
        spec = RateLimitSpec.per_second(1)
        async with res.guard("svc", rate_limit=spec, breaker=CFG):
            pass
        assert (await denied(res, "svc", rate_limit=spec, breaker=CFG)).type == "RATE_LIMITED"
        await trip(res, "svc")
        assert (await denied(res, "svc", breaker=CFG)).type == "UPSTREAM_ERROR"
        assert await state(res, "svc") == "open"
        warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
        assert len(warnings) == 2  # once for the limiter, once for the breaker
    finally:
        await client.aclose()


# -- activity level ---------------------------------------------------------------------------


async def test_external_api_fails_fast_after_five_503s() -> None:
    server = FakeHTTPServer().start()
    http = new_http_client()
    try:
        server.route("GET", "/current.json", Response(503, {"error": {"message": "down"}}))
        settings = Settings(
            _env_file=None,
            environment="test",
            weatherapi_api_key="k-123456789",
            weatherapi_base_url=server.url,
        )
        acts = ExternalApiActivities(
            settings, http, load_services(), ResponseCache(), Resilience(prefix="test:")
        )
        input = ExternalApiInput(
            step_id="s", service="weatherapi", operation="current", params={"q": "x"}
        )
        for _ in range(5):
            with pytest.raises(ApplicationError) as info:
                await ActivityEnvironment().run(acts.external_api_call, input)
            assert "HTTP 503" in info.value.message
        assert len(server.requests) == 5
        with pytest.raises(ApplicationError) as info:
            await ActivityEnvironment().run(acts.external_api_call, input)
        assert "circuit breaker for service:weatherapi is open" in info.value.message
        assert not info.value.non_retryable
        assert 29 < delay(info.value) <= 30
        assert len(server.requests) == 5
    finally:
        await http.aclose()
        server.stop()


def _timeout() -> Exception:
    return httpx.ReadTimeout("slow")
