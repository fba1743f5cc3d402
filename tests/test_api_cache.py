"""DELETE /api/v1/cache against the Redis the workers share."""

from __future__ import annotations

import os

import pytest
from redis.asyncio import Redis
from sqlalchemy.engine import Engine
from temporalio.client import Client

from activities.cache import ResponseCache
from core.settings import Settings
from tests.api_server import gateway


async def test_delete_cache_clears_the_shared_redis_cache(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("TEST_REDIS_URL is not set")
    client = Redis.from_url(url)
    cache = ResponseCache(client)
    key = f"cache-test-{os.urandom(4).hex()}"
    await cache.set(key, {"data": 1}, 300)
    assert await cache.get(key) == {"data": 1}
    try:
        async with gateway(
            settings.model_copy(update={"redis_url": url}),
            engine=engine,
            temporal_client=temporal_client,
        ) as api:
            resp = await api.delete("/api/v1/cache")
        fresh = ResponseCache(client)  # no in-process copy: reads Redis only
        assert resp.status_code == 200 and resp.json()["deleted"] >= 1
        assert await fresh.get(key) is None
    finally:
        await client.aclose()


async def test_delete_cache_without_redis_explains_why_not(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
        resp = await api.delete("/api/v1/cache")
    assert resp.status_code == 409 and "REDIS_URL" in resp.json()["detail"]
