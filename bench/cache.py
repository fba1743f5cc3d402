"""Cache: hit vs miss latency of the external_api response cache, and upstream calls saved.

The real `external_api_call` activity (ActivityEnvironment) calls a wire-level WeatherAPI fake
(FakeHTTPServer on 127.0.0.1). Per backend — in-process always; Redis when REDIS_URL or
TEST_REDIS_URL is set, else a throwaway loopback redis-server when one is installed — it
measures sequential calls: no cache (ttl 0), miss (new request, then stored), hit, and the bare
ResponseCache.get of a stored key; then K identical steps with and without the cache, counting
the requests that reached the upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from temporalio.testing import ActivityEnvironment

from activities.cache import ResponseCache
from activities.external_api import ExternalApiActivities, ExternalApiInput
from activities.http_errors import new_http_client
from bench.common import Server, notes, percentile, print_table, ratio, rounded
from core.settings import Settings
from tests.fakes.http_server import FakeHTTPServer, Response
from workflow_defs.services import load_services

PATH = "/current.json"
WEATHER = {
    "location": {"name": "Paris", "country": "France", "lat": 48.87, "lon": 2.33},
    "current": {"temp_c": 14.0, "condition": {"text": "Partly cloudy", "code": 1003}},
}
TTL = 3600


async def _timed(n: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    """Latencies in ms of n sequential calls."""
    out: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        await call(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _redis() -> AsyncIterator[tuple[aioredis.Redis | None, str]]:
    """A Redis client and where it came from; (None, reason) when there is none."""
    url = os.environ.get("REDIS_URL") or os.environ.get("TEST_REDIS_URL")
    proc: asyncio.subprocess.Process | None = None
    source = "REDIS_URL" if os.environ.get("REDIS_URL") else "TEST_REDIS_URL"
    if not url:
        binary = shutil.which("redis-server")
        if binary is None:
            yield None, "no REDIS_URL/TEST_REDIS_URL and no redis-server installed"
            return
        port = _free_port()
        # Loopback only, nothing written to disk; stopped below by its own pid.
        args = ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
        proc = await asyncio.create_subprocess_exec(
            binary, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        url, source = f"redis://127.0.0.1:{port}/0", "throwaway redis-server on loopback"
    client = aioredis.from_url(url, socket_connect_timeout=2)
    try:
        for _ in range(50):  # a spawned server needs a moment
            try:
                await client.ping()
                break
            except (OSError, RedisError):
                await asyncio.sleep(0.1)
        else:
            yield None, f"Redis at {source} did not answer"
            return
        yield client, source
    finally:
        await client.aclose()
        if proc is not None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _measure(
    backend: str, cache: ResponseCache, settings: Settings, fake: FakeHTTPServer, n: int, k: int
) -> dict[str, Any]:
    http = new_http_client()
    acts = ExternalApiActivities(settings, http, load_services(), cache)
    env = ActivityEnvironment()
    tag = uuid.uuid4().hex[:8]

    async def call(q: str, ttl: int) -> bool:
        out = await env.run(
            acts.external_api_call,
            ExternalApiInput(
                step_id="weather",
                service="weatherapi",
                operation="current",
                params={"q": q},
                cache_ttl=ttl,
            ),
        )
        return out.cached

    def upstream_calls() -> int:
        return len(fake.requests_to(PATH))

    try:
        await call(f"warm-{tag}", 0)  # connection pool, first-request costs
        uncached = await _timed(n, lambda i: call(f"plain-{tag}", 0))
        misses = await _timed(n, lambda i: call(f"miss-{tag}-{i}", TTL))
        await call(f"hit-{tag}", TTL)
        hits = await _timed(n, lambda i: call(f"hit-{tag}", TTL))
        if not await call(f"hit-{tag}", TTL):
            raise RuntimeError("a repeated call was not served from the cache")
        # The bare lookup, without the activity around it: a stored entry of the same shape.
        stored = f"bench:{tag}"
        await cache.set(stored, {"data": WEATHER, "status_code": 200}, TTL)
        lookups = await _timed(n, lambda i: cache.get(stored))

        before = upstream_calls()
        for _ in range(k):
            await call(f"saved-{tag}", TTL)
        with_cache = upstream_calls() - before
        before = upstream_calls()
        for _ in range(k):
            await call(f"saved-{tag}", 0)
        without_cache = upstream_calls() - before
    finally:
        await http.aclose()
    p50 = {
        "uncached": percentile(uncached, 50),
        "miss": percentile(misses, 50),
        "hit": percentile(hits, 50),
        "lookup": percentile(lookups, 50),
    }
    return {
        "backend": backend,
        "calls_per_case": n,
        "p50_ms": {name: rounded(v, 4) for name, v in p50.items()},
        "p99_ms": {
            "uncached": rounded(percentile(uncached, 99), 4),
            "miss": rounded(percentile(misses, 99), 4),
            "hit": rounded(percentile(hits, 99), 4),
            "lookup": rounded(percentile(lookups, 99), 4),
        },
        "ratio_hit_over_uncached": rounded(ratio(p50["hit"], p50["uncached"])),
        "ratio_hit_over_miss": rounded(ratio(p50["hit"], p50["miss"])),
        "calls_saved": {
            "steps": k,
            "upstream_calls_with_cache": with_cache,
            "upstream_calls_without_cache": without_cache,
            "saved": without_cache - with_cache,
        },
    }


async def run(server: Server | None, *, quick: bool) -> dict[str, Any]:
    n, k = (30, 10) if quick else (200, 50)
    results: list[dict[str, Any]] = []
    with FakeHTTPServer() as fake:
        fake.route("GET", PATH, Response(200, WEATHER))
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            environment="test",
            weatherapi_api_key="bench-weather-key",
            weatherapi_base_url=fake.url,
        )
        results.append(await _measure("in-process", ResponseCache(), settings, fake, n, k))
        async with _redis() as (client, source):
            if client is not None:
                cache = ResponseCache(client, prefix=f"llmflow:bench:{uuid.uuid4().hex[:8]}:")
                try:
                    results.append(await _measure("redis", cache, settings, fake, n, k))
                finally:
                    await cache.clear()

    def us(ms: float | None) -> str:
        return "n/a" if ms is None else f"{ms * 1000:.1f}"

    print_table(
        f"cache — external_api weatherapi.current via ActivityEnvironment, {n} sequential calls "
        f"per case, p50 in microseconds; calls saved over {k} identical steps",
        ["backend", "no cache", "miss", "hit", "bare get", "hit/no cache", "calls saved"],
        [
            [
                r["backend"],
                us(r["p50_ms"]["uncached"]),
                us(r["p50_ms"]["miss"]),
                us(r["p50_ms"]["hit"]),
                us(r["p50_ms"]["lookup"]),
                r["ratio_hit_over_uncached"],
                f"{r['calls_saved']['saved']}/{k}",
            ]
            for r in results
        ],
    )
    notes(
        f"redis: {source}",
        "upstream = FakeHTTPServer on loopback (Nagle off): a real API adds its network round "
        "trip to 'no cache' and 'miss' only",
    )
    return {"redis": source, "backends": results}
