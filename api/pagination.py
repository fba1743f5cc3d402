"""Keyset cursors shared by the list endpoints: opaque base64 of (created_at, tie-breaker id)."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import TypeVar

from core.db import parse_time

K = TypeVar("K", str, int)


class BadCursor(ValueError):
    pass


def encode_cursor(created_at: datetime, key: str | int) -> str:
    raw = json.dumps([created_at.isoformat(), key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, key_type: type[K]) -> tuple[datetime, K]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, key = json.loads(raw)
        parsed = parse_time(created)
    except Exception:
        raise BadCursor("invalid cursor; pass next_cursor from a previous page") from None
    if parsed is None or type(key) is not key_type:
        raise BadCursor("invalid cursor; pass next_cursor from a previous page")
    return parsed, key
