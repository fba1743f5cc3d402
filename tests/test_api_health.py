"""GET /api/v1/health/detailed through the real gateway: database, Temporal namespace, worker
pollers (describe_task_queue) and Redis, each failing for real."""

from __future__ import annotations

import asyncio
import os
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from api.deps import get_engine
from api.health_checks import assess_pollers, check_redis, check_worker
from api.temporal_link import TemporalLink
from core.db import make_engine
from core.settings import Settings
from tests import harness
from tests.api_server import serve
from tests.test_api_workflows import build_app

DETAILED = "/api/v1/health/detailed"
DEAD_REDIS = "redis://127.0.0.1:1/0"
DEAD_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:1/x"


async def detailed_until(api: httpx.AsyncClient, ready: Any, within: float = 10) -> httpx.Response:
    """Poll until `ready(body)`: a new worker's first poll reaches the server a moment later."""
    deadline = time.monotonic() + within
    while True:
        resp = await api.get(DETAILED)
        if ready(resp.json()) or time.monotonic() > deadline:
            return resp
        await asyncio.sleep(0.1)


async def test_without_a_worker_the_queue_has_no_pollers_and_health_is_degraded(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    app = build_app(settings, engine=engine, temporal_client=temporal_client)
    async with serve(app) as api:
        resp = await api.get(DETAILED)
        plain = await api.get("/health")
    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert body["status"] == "degraded"
    parts = body["components"]
    assert parts["database"]["status"] == "ok" and parts["database"]["detail"] in (
        "sqlite",
        "postgresql",
    )
    assert parts["database"]["latency_ms"] >= 0
    assert parts["temporal"] == {
        "status": "ok",
        "namespace": temporal_client.namespace,
        "detail": settings.temporal_address,
        "latency_ms": parts["temporal"]["latency_ms"],
    }
    assert parts["worker"] == {
        "status": "error",
        "task_queue": settings.temporal_task_queue,
        "pollers": [],
        "stale_pollers": [],
        "last_poll_seconds": None,
        "detail": "no worker is polling the task queue",
    }
    assert parts["redis"]["status"] == "disabled"
    assert plain.status_code == 200  # the liveness probe doesn't need a worker


async def test_a_running_worker_shows_up_as_a_poller_and_health_is_ok(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    app = build_app(settings, engine=engine, temporal_client=temporal_client)
    async with harness.running_worker(temporal_client, settings, engine):
        async with serve(app) as api:
            resp = await detailed_until(api, lambda b: b["status"] == "ok")
    assert resp.status_code == 200, resp.text
    worker = resp.json()["components"]["worker"]
    assert worker["status"] == "ok" and worker["task_queue"] == settings.temporal_task_queue
    assert len(worker["pollers"]) >= 1 and all(worker["pollers"])
    # A worker that just started polled moments ago.
    assert worker["stale_pollers"] == [] and 0 <= worker["last_poll_seconds"] < 30
    assert re.fullmatch(r"\d+ poller\(s\), last poll \d+ s ago", worker["detail"])


async def test_a_stopped_worker_still_listed_by_temporal_is_not_healthy(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    """Temporal keeps a stopped worker in describe_task_queue for minutes; only its last poll
    time tells it is gone. The freshness window is shortened here so the test needn't wait."""
    link = TemporalLink(settings, client=temporal_client)
    queue = settings.temporal_task_queue
    async with harness.running_worker(temporal_client, settings, engine):
        deadline = time.monotonic() + 10
        running = await check_worker(link, queue)
        while not running.pollers and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            running = await check_worker(link, queue)
    assert running.status == "ok", running
    identity = running.pollers[0]
    await asyncio.sleep(2.5)  # the stopped worker's last poll is now more than 2 s old
    raw = await temporal_client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=temporal_client.namespace,
            task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    assert identity in {p.identity for p in raw.pollers}  # still listed: counting isn't enough
    stopped = await check_worker(link, queue, fresh_seconds=2)
    assert stopped.status == "error" and stopped.pollers == []
    assert stopped.stale_pollers == [identity]
    assert stopped.last_poll_seconds is not None and stopped.last_poll_seconds > 2
    assert stopped.detail and "no worker has polled within 2 s" in stopped.detail


NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def poller(identity: str, seconds_ago: float | None) -> PollerInfo:
    info = PollerInfo(identity=identity, rate_per_second=100000)
    if seconds_ago is not None:
        info.last_access_time.FromDatetime(NOW - timedelta(seconds=seconds_ago))
    return info


def test_pollers_are_judged_by_their_last_poll() -> None:
    fresh = assess_pollers("q", [poller("a@host", 3.2), poller("b@host", 200)], now=NOW)
    assert fresh.status == "ok" and fresh.pollers == ["a@host"]
    assert fresh.stale_pollers == ["b@host"] and fresh.last_poll_seconds == 3.2
    assert fresh.detail == "1 poller(s), last poll 3 s ago"
    # An idle worker's poll is held open for up to a minute: still alive.
    idle = assess_pollers("q", [poller("a@host", 61)], now=NOW)
    assert idle.status == "ok" and idle.detail == "1 poller(s), last poll 61 s ago"
    assert assess_pollers("q", [poller("a@host", 90)], now=NOW).status == "ok"


def test_only_stale_pollers_mean_no_worker() -> None:
    dead = assess_pollers("q", [poller("a@host", 95), poller("b@host", 240)], now=NOW)
    assert dead.status == "error" and dead.pollers == []
    assert dead.stale_pollers == ["a@host", "b@host"] and dead.last_poll_seconds == 95
    assert dead.detail == (
        "no worker has polled within 90 s (last poll 95 s ago); "
        "2 stopped or stuck worker(s) still listed"
    )
    none = assess_pollers("q", [], now=NOW)
    assert none.status == "error" and none.detail == "no worker is polling the task queue"


def test_poller_edge_cases() -> None:
    # Listed twice (several pollers, one identity): the freshest poll counts, even at 0 s.
    twice = assess_pollers("q", [poller("a@host", 300), poller("a@host", 0)], now=NOW)
    assert twice.pollers == ["a@host"] and twice.last_poll_seconds == 0
    # The server's clock ahead of ours is not a negative age.
    ahead = assess_pollers("q", [poller("a@host", -5)], now=NOW)
    assert ahead.status == "ok" and ahead.last_poll_seconds == 0
    # No poll time at all proves nothing.
    unknown = assess_pollers("q", [poller("a@host", None)], now=NOW)
    assert unknown.status == "error" and unknown.stale_pollers == ["a@host"]
    assert unknown.last_poll_seconds is None and "no poll time reported" in (unknown.detail or "")
    custom = assess_pollers("q", [poller("a@host", 20)], now=NOW, fresh_seconds=10)
    assert custom.status == "error"


async def test_unreachable_database_is_503_naming_the_database(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    dead = make_engine(DEAD_POSTGRES)
    app = build_app(settings, engine=engine, temporal_client=temporal_client)
    # The lifespan creates tables on the real engine; the checks then see the dead one.
    app.dependency_overrides[get_engine] = lambda: dead
    try:
        async with serve(app) as api:
            resp = await api.get(DETAILED)
    finally:
        dead.dispose()
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "degraded"
    database = body["components"]["database"]
    assert database["status"] == "error"
    assert database["detail"].startswith("OperationalError") and "127.0.0.1" in database["detail"]
    assert body["components"]["temporal"]["status"] == "ok"


async def test_missing_namespace_fails_temporal_and_worker(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    elsewhere = Client(
        temporal_client.service_client,
        namespace="no-such-namespace",
        data_converter=temporal_client.data_converter,
    )
    app = build_app(settings, engine=engine, temporal_client=elsewhere)
    async with serve(app) as api:
        resp = await api.get(DETAILED)
    assert resp.status_code == 503
    parts = resp.json()["components"]
    assert parts["temporal"]["status"] == "error"
    assert parts["temporal"]["namespace"] == "no-such-namespace"
    assert "no-such-namespace" in parts["temporal"]["detail"]
    assert parts["worker"]["status"] == "error" and parts["worker"]["pollers"] == []
    assert parts["database"]["status"] == "ok"


async def test_configured_but_unreachable_redis_degrades_health(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    with_redis = settings.model_copy(update={"redis_url": DEAD_REDIS})
    app = build_app(with_redis, engine=engine, temporal_client=temporal_client)
    async with harness.running_worker(temporal_client, with_redis, engine):
        async with serve(app) as api:
            resp = await detailed_until(api, lambda b: b["components"]["worker"]["pollers"])
    body = resp.json()
    assert body["components"]["worker"]["status"] == "ok"
    redis = body["components"]["redis"]
    assert redis["status"] == "error" and "127.0.0.1:1" in redis["detail"]
    # Everything else is fine: Redis alone makes it degraded.
    assert resp.status_code == 503 and body["status"] == "degraded"


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("TEST_REDIS_URL is not set")
    return url


async def test_reachable_redis_is_ok(
    temporal_client: Client, settings: Settings, engine: Engine, redis_url: str
) -> None:
    with_redis = settings.model_copy(update={"redis_url": redis_url})
    app = build_app(with_redis, engine=engine, temporal_client=temporal_client)
    async with harness.running_worker(temporal_client, with_redis, engine):
        async with serve(app) as api:
            resp = await detailed_until(api, lambda b: b["status"] == "ok")
    assert resp.status_code == 200, resp.text
    redis = resp.json()["components"]["redis"]
    assert redis["status"] == "ok" and redis["latency_ms"] >= 0


async def test_the_apps_shared_redis_client_is_used_when_present(
    temporal_client: Client, settings: Settings, engine: Engine, redis_url: str
) -> None:
    # The lifespan builds one Redis client from REDIS_URL; the check pings through it.
    app = build_app(
        settings.model_copy(update={"redis_url": redis_url}),
        engine=engine,
        temporal_client=temporal_client,
    )
    async with serve(app) as api:
        shared = app.state.redis
        assert shared is not None
        resp = await api.get(DETAILED)
    assert resp.json()["components"]["redis"]["status"] == "ok"


async def test_a_redis_that_never_answers_is_bounded_by_the_timeout() -> None:
    held: list[asyncio.StreamWriter] = []

    async def accept_and_stay_silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept_and_stay_silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        start = time.monotonic()
        result = await check_redis(f"redis://:pw-s3cret@127.0.0.1:{port}/0", within=0.3)
        elapsed = time.monotonic() - start
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert result.status == "error" and elapsed < 2
    assert "pw-s3cret" not in (result.detail or "")


async def test_detailed_health_needs_the_api_key_but_health_does_not(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    keyed = settings.model_copy(update={"api_keys": ["health-key-123456"]})
    app = build_app(keyed, engine=engine, temporal_client=temporal_client)
    async with serve(app) as api:
        bare = await api.get(DETAILED)
        with_key = await api.get(DETAILED, headers={"X-API-Secret": "health-key-123456"})
        plain = await api.get("/health")
    assert bare.status_code == 401
    assert with_key.status_code == 503 and with_key.json()["components"]["worker"]["pollers"] == []
    assert plain.status_code == 200


async def test_openapi_documents_detailed_health(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    app = build_app(settings, engine=engine, temporal_client=temporal_client)
    async with serve(app) as api:
        spec = (await api.get("/openapi.json")).json()
    responses = spec["paths"][DETAILED]["get"]["responses"]
    assert {"200", "401", "503"} <= set(responses)
    ref = {"$ref": "#/components/schemas/DetailedHealth"}
    assert responses["503"]["content"]["application/json"]["schema"] == ref
    assert spec["components"]["schemas"]["DetailedHealth"]["examples"]


async def test_open_breakers_shared_through_redis_are_reported(
    temporal_client: Client, settings: Settings, engine: Engine, redis_url: str
) -> None:
    from redis.asyncio import Redis

    from activities.breaker import BreakerConfig
    from activities.resilience import Resilience

    key = f"service:health-test-{os.urandom(4).hex()}"
    client = Redis.from_url(redis_url)
    shared = Resilience(client)
    cfg = BreakerConfig(failure_threshold=2, recovery_timeout=60)
    for _ in range(2):
        await shared.breaker.record_failure(key, cfg, "UPSTREAM_ERROR: 503")
    try:
        app = build_app(
            settings.model_copy(update={"redis_url": redis_url}),
            engine=engine,
            temporal_client=temporal_client,
        )
        async with serve(app) as api:
            body = (await api.get(DETAILED)).json()
    finally:
        await client.delete(f"llmflow:breaker:{key}")
        await client.aclose()
    breakers = body["components"]["breakers"]
    assert breakers["status"] == "open" and key in breakers["open"]
    assert breakers["states"][key]["state"] == "open"
