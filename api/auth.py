"""API-key auth for /api/v1 (DESIGN §5): `Authorization: Bearer <key>` or `X-API-Secret: <key>`.

Every configured key is compared in constant time, and all of them are always compared, so the
answer's timing says nothing about which key (or how much of one) matched.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from core.settings import Settings

ANONYMOUS = "anonymous"


class ProductionWithoutKeys(RuntimeError):
    pass


def check_auth_config(settings: Settings) -> None:
    if settings.environment == "production" and not settings.api_keys:
        raise ProductionWithoutKeys(
            "ENVIRONMENT=production requires API_KEYS (comma-separated bearer keys); "
            "refusing to start an unauthenticated gateway"
        )


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    secret = request.headers.get("x-api-secret")
    return secret.strip() if secret else None


def principal_of(key: str) -> str:
    """A stable, non-secret name for an API key (scopes idempotency keys per caller)."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def authenticate(request: Request) -> str:
    settings: Settings = request.app.state.settings
    if not settings.api_keys:
        return ANONYMOUS
    presented = _presented_key(request)
    matched = False
    candidate = (presented or "").encode()
    for key in settings.api_keys:
        matched |= hmac.compare_digest(candidate, key.encode())
    if not presented or not matched:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid API key (send Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal_of(presented)


Principal = Annotated[str, Depends(authenticate)]
