"""Webhook body encoding, signatures and headers. Pure functions.

Two signatures are sent so receivers can use whichever they already support: the earlier
service's `X-Webhook-Signature: sha256=<hex>` over the raw body, and the Standard Webhooks
(standardwebhooks.com) `webhook-signature: v1,<base64>` over "{id}.{timestamp}.{body}", whose
timestamp lets receivers reject replays.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel

HEX_PREFIX = "sha256="
STANDARD_PREFIX = "v1,"
WHSEC_PREFIX = "whsec_"


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_body(payload: Any) -> bytes:
    """Canonical compact JSON (sorted keys, UTF-8): the exact bytes that are signed and sent."""
    return json.dumps(
        payload,
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    ).encode("utf-8")


def sign_hex(secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return HEX_PREFIX + digest


def verify_hex_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of a `sha256=<hex>` header (the bare hex digest is accepted too)."""
    if not secret or not header:
        return False
    candidate = header.strip()
    if candidate.lower().startswith(HEX_PREFIX):
        candidate = candidate[len(HEX_PREFIX) :]
    expected = sign_hex(secret, body)[len(HEX_PREFIX) :]
    return hmac.compare_digest(expected.encode(), candidate.lower().encode())


def _standard_key(secret: str) -> bytes:
    # Standard Webhooks secrets are "whsec_" + base64 of the key bytes; anything else is used
    # as raw UTF-8 so a plain LLM_WEBHOOK_SECRET works for both signatures.
    if secret.startswith(WHSEC_PREFIX):
        try:
            return base64.b64decode(secret[len(WHSEC_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("webhook secret starts with whsec_ but is not valid base64") from None
    return secret.encode("utf-8")


def standard_webhooks_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()
    return STANDARD_PREFIX + base64.b64encode(digest).decode("ascii")


def verify_standard_webhooks_signature(
    secret: str, msg_id: str, timestamp: int, body: bytes, header: str | None
) -> bool:
    """True when any of the space-separated `v1,<sig>` entries matches (constant time).

    Receivers should also reject timestamps too far from their clock (the spec suggests 5 min).
    """
    if not secret or not header:
        return False
    expected = standard_webhooks_signature(secret, msg_id, timestamp, body).encode()
    matched = False
    for entry in header.split():
        matched |= hmac.compare_digest(expected, entry.encode())
    return matched


def build_webhook_headers(
    *,
    secret: str,
    body: bytes,
    event: str,
    delivery_id: str,
    timestamp: int,
    version: str = "0.1.0",
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": f"LLM-Workflow-Service/{version}",
        "X-Webhook-Signature": sign_hex(secret, body),
        "X-Webhook-Event": event,
        "X-Webhook-Id": delivery_id,
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_webhooks_signature(secret, delivery_id, timestamp, body),
    }
