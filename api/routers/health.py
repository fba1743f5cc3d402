"""Health: GET /health (no prefix) for orchestrators — is the database reachable, is Temporal
reachable — and GET /api/v1/health/detailed for operators (`detailed_router`, mounted under
/api/v1): database, Temporal namespace, worker pollers and Redis."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response, status

from api.auth import Principal
from api.deps import EngineDep, SettingsDep, TemporalDep
from api.health_checks import DetailedHealth, detailed_health
from api.schemas import ComponentHealth, HealthView
from core.db import ping

router = APIRouter(tags=["health"])
detailed_router = APIRouter(prefix="/health", tags=["health"])


@router.get("/health", response_model=HealthView)
async def health(
    response: Response, settings: SettingsDep, engine: EngineDep, temporal: TemporalDep
) -> HealthView:
    components: dict[str, ComponentHealth] = {}
    try:
        await asyncio.wait_for(asyncio.to_thread(ping, engine), timeout=5)
        components["database"] = ComponentHealth(status="ok")
    except Exception as exc:
        components["database"] = ComponentHealth(status="error", detail=type(exc).__name__)
    try:
        client = await temporal.client()
        await asyncio.wait_for(client.service_client.check_health(), timeout=5)
        components["temporal"] = ComponentHealth(status="ok", detail=settings.temporal_address)
    except Exception as exc:
        components["temporal"] = ComponentHealth(status="error", detail=type(exc).__name__)
    ok = all(c.status == "ok" for c in components.values())
    if not ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return HealthView(status="ok" if ok else "degraded", components=components)


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
