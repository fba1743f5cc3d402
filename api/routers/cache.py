"""DELETE /api/v1/cache: drop cached external_api responses."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel
from redis.exceptions import RedisError

from api.auth import Principal
from core.redis_keys import CACHE_PREFIX

router = APIRouter(prefix="/cache", tags=["cache"])


class CacheCleared(BaseModel):
    deleted: int


@router.delete(
    "",
    response_model=CacheCleared,
    responses={
        409: {
            "description": "No REDIS_URL: each worker keeps its own in-process cache (restart workers to clear it)"
        },
        503: {"description": "Redis unreachable"},
    },
)
async def clear_cache(request: Request, _: Principal) -> CacheCleared:
    """Delete every cached response shared through Redis; the next identical calls go upstream."""
    redis = getattr(request.app.state, "redis", None)
    if redis is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "REDIS_URL is not set: responses are cached inside each worker process; restart the workers to clear them",
        )
    deleted = 0
    try:
        batch: list[bytes] = []
        async for name in redis.scan_iter(match=CACHE_PREFIX + "*", count=500):
            batch.append(name)
            if len(batch) >= 500:
                deleted += await redis.delete(*batch)
                batch.clear()
        if batch:
            deleted += await redis.delete(*batch)
    except RedisError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"Redis unavailable: {type(exc).__name__}"
        ) from None
    return CacheCleared(deleted=deleted)
