"""Health: GET /health (no prefix) for orchestrators — is the database reachable, is Temporal
reachable — and GET /api/v1/health/detailed for operators (`detailed_router`, mounted under
/api/v1): database, Temporal namespace, worker pollers and Redis."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request, Response, status

from api.auth import Principal
from api.deps import EngineDep, SettingsDep, TemporalDep
from api.health_checks import DetailedHealth, detailed_health
from api.schemas import ComponentHealth, HealthView, ServiceHealth
from core.db import ping

router = APIRouter(tags=["health"])
detailed_router = APIRouter(prefix="/health", tags=["health"])


# Jobs can't be accepted or run without these; Redis only shares caches, limits and streams.
REQUIRED = ("database", "temporal")
_SERVICE_STATUS: dict[str, Literal["healthy", "unhealthy", "disabled"]] = {
    "ok": "healthy",
    "error": "unhealthy",
    "disabled": "disabled",
}


@router.get(
    "/health",
    response_model=HealthView,
    responses={503: {"model": HealthView, "description": "The database or Temporal is down"}},
)
async def health(
    request: Request,
    response: Response,
    settings: SettingsDep,
    engine: EngineDep,
    temporal: TemporalDep,
) -> HealthView:
    """`healthy`, `degraded` (Redis down: jobs still run, caches and limits are per process)
    or `unhealthy` (503: the database or Temporal is down). No API key needed."""
    components: dict[str, ComponentHealth] = {}

    async def database() -> None:
        try:
            await asyncio.wait_for(asyncio.to_thread(ping, engine), timeout=5)
            components["database"] = ComponentHealth(status="ok")
        except Exception as exc:
            components["database"] = ComponentHealth(status="error", detail=type(exc).__name__)

    async def temporal_server() -> None:
        try:
            client = await temporal.client()
            await asyncio.wait_for(client.service_client.check_health(), timeout=5)
            components["temporal"] = ComponentHealth(status="ok", detail=settings.temporal_address)
        except Exception as exc:
            components["temporal"] = ComponentHealth(status="error", detail=type(exc).__name__)

    async def redis() -> None:
        client = getattr(request.app.state, "redis", None)
        if client is None:
            components["redis"] = ComponentHealth(status="disabled")
            return
        try:
            await asyncio.wait_for(client.ping(), timeout=2)
            components["redis"] = ComponentHealth(status="ok")
        except Exception as exc:
            components["redis"] = ComponentHealth(status="error", detail=type(exc).__name__)

    await asyncio.gather(database(), temporal_server(), redis())
    components = {name: components[name] for name in ("database", "temporal", "redis")}
    if any(components[name].status != "ok" for name in REQUIRED):
        overall: Literal["healthy", "degraded", "unhealthy"] = "unhealthy"
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    elif components["redis"].status == "error":
        overall = "degraded"
    else:
        overall = "healthy"
    services = {
        name: ServiceHealth(status=_SERVICE_STATUS[part.status], detail=part.detail)
        for name, part in components.items()
    }
    return HealthView(status=overall, services=services, components=components)


@detailed_router.get(
    "/detailed",
    response_model=DetailedHealth,
    responses={
        401: {"description": "Missing or invalid API key (when API_KEYS is set)"},
        503: {
            "model": DetailedHealth,
            "description": "Degraded: a required component is not ok (same body)",
        },
    },
)
async def health_detailed(
    request: Request,
    response: Response,
    settings: SettingsDep,
    engine: EngineDep,
    temporal: TemporalDep,
    _: Principal,
) -> DetailedHealth:
    """Every component, checked concurrently, each within 3 s.

    200 when the database, the Temporal namespace and at least one worker polling the task
    queue are ok, and Redis is ok or not configured (`disabled`); 503 with the same body
    otherwise, naming what failed.
    """
    # The lifespan may keep one shared Redis client; without it each check opens its own.
    redis_client = getattr(request.app.state, "redis", None)
    reconciler = getattr(request.app.state, "reconciler", None)
    report = await detailed_health(
        settings,
        engine,
        temporal,
        redis_client,
        stuck_runs=reconciler.stuck if reconciler is not None else None,
    )
    if report.status != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return report
