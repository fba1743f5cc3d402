"""The component checks behind GET /api/v1/health/detailed: plain async functions.

Each check is bounded by a timeout and never raises, so the endpoint answers within about one
timeout even when a component hangs. Failure details go through the redactor: a driver's
message may quote a connection string.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy.engine import Engine
from temporalio.api.enums.v1 import NamespaceState, TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest

from api.temporal_link import TemporalLink
from core.db import ping
from core.redaction import redact_text
from core.redis_keys import CLOSED, read_breaker_states
from core.settings import Settings

CHECK_TIMEOUT_SECONDS = 3.0
MAX_DETAIL_CHARS = 300
# Temporal lists a poller for 5 minutes after its last poll, so a killed worker still shows up;
# only a recent poll proves a worker is alive. A poller's last_access_time is when its current
# poll began, and an idle worker's poll is held open by the server for up to a minute (on the
# dev server an idle worker's age climbs to about 55 s before its next poll resets it). 90 s is
# that minute plus 30 s for clock skew between the gateway and the server and a slow re-poll.
POLLER_FRESH_SECONDS = 90.0


class DatabaseHealth(BaseModel):
    status: Literal["ok", "error"]
    detail: str | None = Field(default=None, description="Dialect when ok, the failure otherwise")
    latency_ms: float | None = None


class TemporalHealth(BaseModel):
    status: Literal["ok", "error"]
    namespace: str
    detail: str | None = None
    latency_ms: float | None = None


class WorkerHealth(BaseModel):
    status: Literal["ok", "error"] = Field(
        description="error when no worker has polled the queue recently"
    )
    task_queue: str
    pollers: list[str] = Field(
        default_factory=list,
        description=f"Identities of workers that polled the workflow task queue within the last "
        f"{POLLER_FRESH_SECONDS:g} s",
    )
    stale_pollers: list[str] = Field(
        default_factory=list,
        description="Identities Temporal still lists without a recent poll: stopped or stuck "
        "workers (a stopped worker stays listed for about 5 minutes)",
    )
    last_poll_seconds: float | None = Field(
        default=None, description="Seconds since the most recent poll by any listed worker"
    )
    detail: str | None = None


class RedisHealth(BaseModel):
    status: Literal["ok", "error", "disabled"] = Field(
        description="disabled when REDIS_URL is unset (cache and limits stay in-process)"
    )
    detail: str | None = None
    latency_ms: float | None = None


class BreakersHealth(BaseModel):
    status: Literal["ok", "open", "unknown"] = Field(
        description="open when any service/provider breaker is open or half-open; unknown "
        "without Redis (breakers then live inside each worker)"
    )
    open: list[str] = Field(
        default_factory=list, description="keys like service:weatherapi, llm:openrouter"
    )
    states: dict[str, dict[str, Any]] = Field(default_factory=dict)


class RunsHealth(BaseModel):
    status: Literal["ok", "stuck"] = Field(
        default="ok",
        description="stuck when a running job's workflow task keeps failing (informational: "
        "the gateway itself is fine; an operator must fix the cause and reset the run)",
    )
    stuck: dict[str, int] = Field(
        default_factory=dict, description="job id → attempts of its failing workflow task"
    )


class DetailedComponents(BaseModel):
    database: DatabaseHealth
    temporal: TemporalHealth
    worker: WorkerHealth
    redis: RedisHealth
    breakers: BreakersHealth = Field(default_factory=lambda: BreakersHealth(status="unknown"))
    runs: RunsHealth = Field(default_factory=RunsHealth)


class DetailedHealth(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "degraded",
                    "components": {
                        "database": {"status": "ok", "detail": "postgresql", "latency_ms": 1.8},
                        "temporal": {
                            "status": "ok",
                            "namespace": "default",
                            "detail": "localhost:7233",
                            "latency_ms": 3.2,
                        },
                        "worker": {
                            "status": "error",
                            "task_queue": "llm-workflows",
                            "pollers": [],
                            "stale_pollers": ["4242@worker-1"],
                            "last_poll_seconds": 143.2,
                            "detail": "no worker has polled within 90 s (last poll 143 s ago); "
                            "1 stopped or stuck worker(s) still listed",
                        },
                        "redis": {"status": "disabled", "detail": "REDIS_URL is not set"},
                    },
                }
            ]
        }
    )

    status: Literal["ok", "degraded"]
    components: DetailedComponents


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


def _failure(exc: BaseException, within: float) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"no answer within {within:g}s"
    message = redact_text(" ".join(str(exc).split()), truncate=False)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


async def check_database(
    engine: Engine, *, within: float = CHECK_TIMEOUT_SECONDS
) -> DatabaseHealth:
    start = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.to_thread(ping, engine), within)
    except Exception as exc:
        return DatabaseHealth(
            status="error", detail=_failure(exc, within), latency_ms=_elapsed_ms(start)
        )
    return DatabaseHealth(status="ok", detail=engine.dialect.name, latency_ms=_elapsed_ms(start))


async def check_temporal(
    temporal: TemporalLink, settings: Settings, *, within: float = CHECK_TIMEOUT_SECONDS
) -> TemporalHealth:
    """Is the namespace the gateway starts jobs in reachable and registered."""
    start = time.perf_counter()
    namespace = settings.temporal_namespace

    async def probe() -> NamespaceState.ValueType:
        nonlocal namespace
        client = await temporal.client()
        namespace = client.namespace
        resp = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), timeout=timedelta(seconds=within)
        )
        return resp.namespace_info.state

    try:
        state = await asyncio.wait_for(probe(), within)
    except Exception as exc:
        return TemporalHealth(
            status="error",
            namespace=namespace,
            detail=_failure(exc, within),
            latency_ms=_elapsed_ms(start),
        )
    if state != NamespaceState.NAMESPACE_STATE_REGISTERED:
        return TemporalHealth(
            status="error",
            namespace=namespace,
            detail=f"namespace state {NamespaceState.Name(state)}",
            latency_ms=_elapsed_ms(start),
        )
    return TemporalHealth(
        status="ok",
        namespace=namespace,
        detail=settings.temporal_address,
        latency_ms=_elapsed_ms(start),
    )


def assess_pollers(
    task_queue: str,
    pollers: Iterable[PollerInfo],
    *,
    now: datetime | None = None,
    fresh_seconds: float = POLLER_FRESH_SECONDS,
) -> WorkerHealth:
    """Worker health from describe_task_queue's pollers, judged by how recently each polled."""
    now = now or datetime.now(UTC)
    ages: dict[str, float | None] = {}
    for poller in pollers:
        age: float | None = None
        if poller.HasField("last_access_time"):
            polled = poller.last_access_time.ToDatetime(tzinfo=UTC)
            age = max(0.0, (now - polled).total_seconds())  # the server's clock may run ahead
        # One identity can be listed more than once; its freshest poll counts.
        known = ages.get(poller.identity)
        if known is None:
            ages[poller.identity] = age
        elif age is not None:
            ages[poller.identity] = min(known, age)
    if not ages:
        return WorkerHealth(
            status="error", task_queue=task_queue, detail="no worker is polling the task queue"
        )
    fresh = sorted(i for i, a in ages.items() if a is not None and a <= fresh_seconds)
    stale = sorted(set(ages) - set(fresh))
    known_ages = [a for a in ages.values() if a is not None]
    last = round(min(known_ages), 1) if known_ages else None
    if fresh:
        return WorkerHealth(
            status="ok",
            task_queue=task_queue,
            pollers=fresh,
            stale_pollers=stale,
            last_poll_seconds=last,
            detail=f"{len(fresh)} poller(s), last poll {last:.0f} s ago",
        )
    since = f"last poll {last:.0f} s ago" if last is not None else "no poll time reported"
    return WorkerHealth(
        status="error",
        task_queue=task_queue,
        stale_pollers=stale,
        last_poll_seconds=last,
        detail=f"no worker has polled within {fresh_seconds:g} s ({since}); "
        f"{len(stale)} stopped or stuck worker(s) still listed",
    )


async def check_worker(
    temporal: TemporalLink,
    task_queue: str,
    *,
    within: float = CHECK_TIMEOUT_SECONDS,
    fresh_seconds: float = POLLER_FRESH_SECONDS,
) -> WorkerHealth:
    """Workers polling the workflow task queue: without one, accepted jobs only queue up."""

    async def probe() -> list[PollerInfo]:
        client = await temporal.client()
        resp = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            ),
            timeout=timedelta(seconds=within),
        )
        return list(resp.pollers)

    try:
        pollers = await asyncio.wait_for(probe(), within)
    except Exception as exc:
        return WorkerHealth(status="error", task_queue=task_queue, detail=_failure(exc, within))
    return assess_pollers(task_queue, pollers, fresh_seconds=fresh_seconds)


async def check_redis(
    redis_url: str | None,
    client: Redis | None = None,
    *,
    within: float = CHECK_TIMEOUT_SECONDS,
) -> RedisHealth:
    """PING through the shared client when the app has one, else through a short-lived one."""
    if not redis_url:
        return RedisHealth(status="disabled", detail="REDIS_URL is not set")
    start = time.perf_counter()
    own = client is None
    if client is None:
        # No retries: the answer is about Redis now, and the timeout bounds it anyway.
        client = Redis.from_url(
            redis_url,
            socket_connect_timeout=within,
            socket_timeout=within,
            retry=Retry(NoBackoff(), 0),
        )
    try:
        await asyncio.wait_for(client.ping(), within)
    except Exception as exc:
        return RedisHealth(
            status="error", detail=_failure(exc, within), latency_ms=_elapsed_ms(start)
        )
    finally:
        if own:
            await _close_quietly(client)
    return RedisHealth(status="ok", latency_ms=_elapsed_ms(start))


async def _close_quietly(client: Redis) -> None:
    try:
        await asyncio.wait_for(client.aclose(), 1)
    except Exception:
        pass  # a client that never connected has nothing worth reporting on close


async def check_breakers(
    redis_client: Redis | None, *, within: float = CHECK_TIMEOUT_SECONDS
) -> BreakersHealth:
    """Breaker states the workers share through Redis (informational: an open breaker means a
    service is failing, not that llmflow is unhealthy, so it doesn't degrade the status)."""
    if redis_client is None:
        return BreakersHealth(status="unknown")
    try:
        states = await asyncio.wait_for(read_breaker_states(redis_client), timeout=within)
    except Exception:
        return BreakersHealth(status="unknown")
    opened = sorted(k for k, v in states.items() if v.get("state") != CLOSED)
    return BreakersHealth(status="open" if opened else "ok", open=opened, states=states)


async def detailed_health(
    settings: Settings,
    engine: Engine,
    temporal: TemporalLink,
    redis_client: Redis | None = None,
    *,
    within: float = CHECK_TIMEOUT_SECONDS,
    stuck_runs: dict[str, int] | None = None,
) -> DetailedHealth:
    """All checks at once; degraded unless the database, Temporal, a worker and (when
    configured) Redis are ok."""
    database, temporal_health, worker, redis, breakers = await asyncio.gather(
        check_database(engine, within=within),
        check_temporal(temporal, settings, within=within),
        check_worker(temporal, settings.temporal_task_queue, within=within),
        check_redis(settings.redis_url, redis_client, within=within),
        check_breakers(redis_client, within=within),
    )
    ok = (
        database.status == "ok"
        and temporal_health.status == "ok"
        and worker.status == "ok"
        and redis.status != "error"
    )
    return DetailedHealth(
        status="ok" if ok else "degraded",
        components=DetailedComponents(
            database=database,
            temporal=temporal_health,
            worker=worker,
            redis=redis,
            breakers=breakers,
            runs=RunsHealth(status="stuck" if stuck_runs else "ok", stuck=dict(stuck_runs or {})),
        ),
    )
