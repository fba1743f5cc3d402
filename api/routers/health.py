"""GET /health: is the database reachable, is Temporal reachable."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response, status

from api.deps import EngineDep, SettingsDep, TemporalDep
from api.schemas import ComponentHealth, HealthView
from core.db import ping

router = APIRouter(tags=["health"])


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
