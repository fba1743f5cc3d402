"""The one redactor every error surface goes through (API, webhooks, DB, logs, Temporal failures).

Secrets are removed two ways: by the *name* of a field (anything that looks like auth, secret,
key, token or password) and by the *shape* of a value (bearer tokens, `sk-…` keys, `key=` query
parameters). Values of configured secrets are also replaced wherever they appear verbatim, which
catches a provider echoing our key back in an error body.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"
MAX_VALUE_CHARS = 200

# A field is secret when one of its words (split on _ - . and camelCase) is one of these.
_SECRET_WORDS = {
    "auth",
    "authorization",
    "secret",
    "password",
    "passwd",
    "pwd",
    "token",
    "apikey",
    "key",
    "credential",
    "credentials",
    "signature",
    "cookie",
    "bearer",
    "private",
}
# Field names that contain a secret word but hold no secret.
_SAFE_NAMES = {"idempotency_key", "cache_key", "sort_key", "key_path", "public_key", "secret_ref"}
_WORD_SPLIT = re.compile(r"[-_\s.]+|(?<=[a-z0-9])(?=[A-Z])")

_SECRET_VALUE_PATTERNS = [
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),
    re.compile(r"\bsk_(live|test)_[A-Za-z0-9]{8,}"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{20,}"),
    re.compile(r"\bwhsec_[A-Za-z0-9+/=]{8,}"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}"),
]
# key=..., api_key=..., token=... inside URLs or log lines.
_QUERY_SECRET = re.compile(
    r"(?i)([?&;\s\"']?(?:key|api[-_]?key|apikey|token|access_token|secret|password|sig|signature)=)([^&\s\"']+)"
)

# Env vars whose values must never appear anywhere, whatever their field name.
SECRET_ENV_VARS = (
    "OPENROUTER_API_KEY",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "OPENAI_COMPATIBLE_API_KEY",
    "WEATHERAPI_API_KEY",
    "GOOGLE_SERVICES_API_KEY",
    "NEXT_PUBLIC_GOOGLE_SERVICES_API_KEY",
    "LLM_WEBHOOK_SECRET",
    "STRAPI_WEBHOOK_SECRET",
    "STRAPI_WEBHOOK_TOKEN",
    "API_KEYS",
)


def _known_secret_values() -> list[str]:
    # Read at call time, not import time, so a key set after start is still covered.
    values: list[str] = []
    for name in SECRET_ENV_VARS:
        raw = os.environ.get(name)
        if not raw:
            continue
        parts = raw.split(",") if name == "API_KEYS" else [raw]
        values.extend(p.strip() for p in parts if len(p.strip()) >= 6)
    return sorted(values, key=len, reverse=True)


def is_secret_name(name: str) -> bool:
    if name.lower() in _SAFE_NAMES:
        return False
    words = {w.lower() for w in _WORD_SPLIT.split(name) if w}
    return bool(words & _SECRET_WORDS)


def redact_text(text: str, *, extra_secrets: Iterable[str] = (), truncate: bool = True) -> str:
    for secret in [*extra_secrets, *_known_secret_values()]:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern in _SECRET_VALUE_PATTERNS:
        text = pattern.sub(REDACTED, text)
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, text)
    if truncate and len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + f"…[truncated {len(text) - MAX_VALUE_CHARS} chars]"
    return text


def redact(value: Any, *, extra_secrets: Iterable[str] = (), truncate: bool = True) -> Any:
    """Return a copy of `value` with secrets removed; dicts/lists are walked recursively."""
    extra = tuple(extra_secrets)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if isinstance(k, str) and is_secret_name(k) and v not in (None, "", False):
                out[k] = REDACTED
            else:
                out[k] = redact(v, extra_secrets=extra, truncate=truncate)
        return out
    if isinstance(value, list | tuple):
        return [redact(v, extra_secrets=extra, truncate=truncate) for v in value]
    if isinstance(value, str):
        return redact_text(value, extra_secrets=extra, truncate=truncate)
    return value
