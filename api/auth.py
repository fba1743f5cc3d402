"""API-key auth for /api/v1 (DESIGN §5): `Authorization: Bearer <key>` or `X-API-Secret: <key>`.

Every configured key is compared in constant time, and all of them are always compared, so the
answer's timing says nothing about which key (or how much of one) matched.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

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


# Declared as security schemes so /docs shows them (and its Authorize button works).
bearer_scheme = HTTPBearer(auto_error=False, description="An API key from API_KEYS")
secret_header_scheme = APIKeyHeader(
    name="X-API-Secret", auto_error=False, description="Alias of the bearer key (earlier service)"
)


def principal_of(key: str) -> str:
    """A stable, non-secret name for an API key (scopes idempotency keys per caller)."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
    secret_header: Annotated[str | None, Security(secret_header_scheme)] = None,
) -> str:
    settings: Settings = request.app.state.settings
    if not settings.api_keys:
        return ANONYMOUS
    presented = (bearer.credentials.strip() if bearer else None) or (
        secret_header.strip() if secret_header else None
    )
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
