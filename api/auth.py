"""API-key auth for /api/v1: `Authorization: Bearer <key>` or `X-API-Secret: <key>`.

`API_KEYS` holds `name:key` entries (a bare `key` still works and is named after a hash of
itself). A key's name is the principal that owns the jobs it submits; names in `API_ADMINS` see
and act on every job. Every configured key is compared in constant time, and all of them are
always compared, so the answer's timing says nothing about which key (or how much of one)
matched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from core.settings import Settings

ANONYMOUS = "anonymous"
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class ProductionWithoutKeys(RuntimeError):
    pass


@dataclass(frozen=True)
class Caller:
    """Who made a request: the key's name (never the key), and what it may see."""

    name: str
    admin: bool = False
    # Authenticated with the earlier service's header: answers use that service's vocabulary
    # where the two differ (a timed-out job reads as failed).
    earlier_client: bool = False

    def owns(self, owner: str | None) -> bool:
        return self.admin or (owner is not None and owner == self.name)

    @property
    def owner_filter(self) -> str | None:
        """The owner a listing is restricted to; None lists everyone's jobs."""
        return None if self.admin else self.name


def check_auth_config(settings: Settings) -> None:
    if settings.environment == "production" and not settings.api_keys:
        raise ProductionWithoutKeys(
            "ENVIRONMENT=production requires API_KEYS (comma-separated name:key entries); "
            "refusing to start an unauthenticated gateway"
        )


def principal_of(key: str) -> str:
    """The name of a bare key: stable and non-secret (it also scopes its Idempotency-Keys)."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def parse_keys(entries: list[str]) -> list[tuple[str, str]]:
    """`name:key` or a bare `key` → (name, key)."""
    parsed = []
    for entry in entries:
        name, sep, key = entry.partition(":")
        if sep and key and KEY_NAME.fullmatch(name):
            parsed.append((name, key))
        else:
            parsed.append((principal_of(entry), entry))
    return parsed


# Declared as security schemes so /docs shows them (and its Authorize button works).
bearer_scheme = HTTPBearer(auto_error=False, description="An API key from API_KEYS")
secret_header_scheme = APIKeyHeader(
    name="X-API-Secret", auto_error=False, description="Alias of the bearer key (earlier service)"
)


async def authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
    secret_header: Annotated[str | None, Security(secret_header_scheme)] = None,
) -> Caller:
    # async (it never blocks): a plain `def` dependency would cost a thread-pool hop per request.
    settings: Settings = request.app.state.settings
    earlier_client = bearer is None and secret_header is not None
    if not settings.api_keys:
        return Caller(ANONYMOUS, admin=True, earlier_client=earlier_client)
    presented = (bearer.credentials.strip() if bearer else None) or (
        secret_header.strip() if secret_header else None
    )
    candidate = (presented or "").encode()
    matched: str | None = None
    for name, key in parse_keys(settings.api_keys):
        if hmac.compare_digest(candidate, key.encode()) and matched is None:
            matched = name
    if not presented or matched is None:
        raise ApiError(
            status.HTTP_401_UNAUTHORIZED,
            "InvalidAPISecret",
            "missing or invalid API key (send Authorization: Bearer <key> or X-API-Secret: <key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Caller(matched, admin=matched in settings.api_admins, earlier_client=earlier_client)


Principal = Annotated[Caller, Depends(authenticate)]
