"""The one redactor every error surface goes through (API, webhooks, DB, logs, Temporal failures).

Secrets are removed three ways:

- by the *name* of a field (anything that looks like auth, secret, key, token or password), in
  dicts and in `name=value` pairs of URLs and log lines;
- by the *shape* of a value (bearer tokens, `sk-…`, `AIza…` and other vendor key formats), whether
  or not that key is configured here;
- by *content*: any run of 8+ characters that also occurs in a configured secret, compared
  case-insensitively and also against the reversed secret. Providers echo keys back upper-cased,
  truncated ("sk-…abc1") or mangled, and an exact-match replace let those through.

The content check is linear in the text: every 8-character window of the (lower-cased) text is
looked up in a set of the secrets' 8-character shingles, and overlapping hits merge into one span,
so a fragment of any length ≥ 8 is found without backtracking or per-secret scans.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import compress
from operator import sub
from typing import Any

REDACTED = "[REDACTED]"
MAX_VALUE_CHARS = 200
# Shortest fragment of a configured secret that is hunted for; shorter runs are too common in
# ordinary text ("-key-", "2024") to remove without mangling it.
MIN_FRAGMENT = 8
# Configured values shorter than this are not hunted for at all; 6 or 7 characters: verbatim only.
MIN_SECRET_CHARS = 6

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
# Query parameters also use abbreviations no dict field does (S3/Azure `sig=`).
_SECRET_PARAM_WORDS = _SECRET_WORDS | {"sig"}
_MAYBE_SECRET_PARAM = re.compile(r"(?i)key|token|secret|pass|pwd|auth|sig|cred|cookie|bearer|priv")

# Vendor key shapes, one alternation so a long text is scanned once; each branch starts with a
# literal, so a position that starts no key fails at once.
_SECRET_VALUE = re.compile(
    "|".join(
        (
            r"(?i:\bbearer\s+[A-Za-z0-9._~+/=-]{8,})",
            # Case-insensitive: an upper-cased echo of an unconfigured key is still that key.
            r"(?i:\bsk-[a-z0-9_-]{8,})",
            r"\bsk_(?:live|test)_[A-Za-z0-9]{8,}",
            r"(?i:\baiza[0-9a-z_-]{20,})",
            r"\bwhsec_[A-Za-z0-9+/=]{8,}",
            r"\bgh[pousr]_[A-Za-z0-9]{20,}",
            r"\bxox[abpr]-[A-Za-z0-9-]{10,}",
        )
    )
)
# `name=value` in URLs and log lines. The name must start a token (the lookbehind), so a long run
# of name characters is tried once, not from every offset; the value is matched separately.
_PARAM_NAME = re.compile(r"(?<![A-Za-z0-9_.\-])([A-Za-z_][A-Za-z0-9_.\-]*)=")
_PARAM_VALUE = re.compile(r"([\"']?)[^&\s\"']+")

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
    "STRAPI_API_TOKEN",
    "SMTP_PASSWORD",
    "API_KEYS",
    "LLMFLOW_SECRET_KEY",
    "LLMFLOW_PAYLOAD_KEY",
    "LLMFLOW_PAYLOAD_OLD_KEYS",
)
# Variables that hold several comma-separated secrets.
LISTED_SECRET_VARS = frozenset({"API_KEYS", "LLMFLOW_SECRET_KEY", "LLMFLOW_PAYLOAD_OLD_KEYS"})
# Entries written `id:secret` (the id is not secret).
NAMED_SECRET_VARS = frozenset({"API_KEYS", "LLMFLOW_PAYLOAD_OLD_KEYS"})


# API_KEYS entries are `name:key` or a bare key, as the gateway parses them (api/auth.py). The
# name is not secret: hunting for it would blank every log line and job row that names the caller.
_API_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _api_key_value(entry: str) -> str:
    name, sep, key = entry.partition(":")
    return key.strip() if sep and key.strip() and _API_KEY_NAME.fullmatch(name) else entry


def _split_values(name: str, raw: Any) -> list[str]:
    if hasattr(raw, "get_secret_value"):  # pydantic SecretStr
        raw = raw.get_secret_value()
    if isinstance(raw, list | tuple):
        parts = [str(p) for p in raw]
    elif isinstance(raw, str):
        parts = raw.split(",") if name in LISTED_SECRET_VARS else [raw]
    else:
        return []
    parts = [p.strip() for p in parts]
    if name in NAMED_SECRET_VARS:
        parts = [_api_key_value(p) for p in parts]
    return [p for p in parts if len(p) >= MIN_SECRET_CHARS]


def _loaded_settings_values() -> list[str]:
    """Keys the process loaded through Settings: a key that only lives in `.env` is not in
    os.environ. Never loads Settings itself: that would freeze get_settings()'s cache before a
    caller (or a test) has set the environment it means to use."""
    try:
        from core.settings import get_settings

        if get_settings.cache_info().currsize == 0:
            return []
        settings = get_settings()
    except Exception:
        return []
    values: list[str] = []
    for name in SECRET_ENV_VARS:
        values.extend(_split_values(name, getattr(settings, name.lower(), None)))
    return values


def _known_secret_values() -> list[str]:
    # Read at call time, not import time, so a key set after start is still covered.
    values: list[str] = []
    for name in SECRET_ENV_VARS:
        values.extend(_split_values(name, os.environ.get(name)))
    values.extend(_loaded_settings_values())
    return values


def _fold(text: str) -> str:
    """Lower-case without changing the length, so offsets in the folded text are offsets in the
    original (str.lower() turns a few characters, like 'İ', into two)."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(ch.lower()[:1] or ch for ch in text)


@dataclass(frozen=True)
class _SecretIndex:
    shingles: frozenset[str]  # every MIN_FRAGMENT-long window of each folded secret and reverse
    candidates: re.Pattern[str] | None  # runs made only of characters that occur in a secret
    verbatim: tuple[str, ...]  # folded secrets too short for shingles, and their reverses


@lru_cache(maxsize=256)
def _index(secrets: tuple[str, ...]) -> _SecretIndex:
    shingles: set[str] = set()
    verbatim: set[str] = set()
    chars: set[str] = set()
    for secret in secrets:
        low = _fold(secret)
        for variant in (low, low[::-1]):
            if len(variant) < MIN_FRAGMENT:
                verbatim.add(variant)
                continue
            chars.update(variant)
            shingles.update(
                variant[i : i + MIN_FRAGMENT] for i in range(len(variant) - MIN_FRAGMENT + 1)
            )
    candidates = None
    if chars:
        char_class = "".join(re.escape(c) for c in sorted(chars))
        candidates = re.compile(f"[{char_class}]{{{MIN_FRAGMENT},}}")
    return _SecretIndex(frozenset(shingles), candidates, tuple(sorted(verbatim, key=len)))


def _secret_spans(text: str, index: _SecretIndex) -> list[tuple[int, int]]:
    low = _fold(text)
    spans: list[tuple[int, int]] = []
    if index.candidates is not None:
        shingles, width = index.shingles, MIN_FRAGMENT
        # Only stretches made of a secret's characters can hold a fragment of it; skipping the
        # rest (C-speed regex) keeps ordinary text fast, and the scan inside is one set lookup
        # per position, so even a megabyte that is all candidate stays linear.
        for run in index.candidates.finditer(low):
            start, end = run.span()
            hits = [i for i in range(start, end - width + 1) if low[i : i + width] in shingles]
            if not hits:
                continue
            # Hits closer than a window apart belong to one fragment; the gaps are found with
            # C-level iterators because a run can be a megabyte of hits.
            first = 0
            gaps = compress(range(1, len(hits)), map(width.__lt__, map(sub, hits[1:], hits)))
            for k in gaps:
                spans.append((hits[first], hits[k - 1] + width))
                first = k
            spans.append((hits[first], hits[-1] + width))
    for needle in index.verbatim:
        at = low.find(needle)
        while at != -1:
            spans.append((at, at + len(needle)))
            at = low.find(needle, at + 1)
    return spans


def _replace_spans(text: str, spans: list[tuple[int, int]]) -> str:
    if not spans:
        return text
    spans.sort()
    out: list[str] = []
    pos = 0
    cur_start, cur_end = spans[0]
    for start, end in spans[1:]:
        if start <= cur_end:  # overlapping or touching: one fragment
            cur_end = max(cur_end, end)
            continue
        out.append(text[pos:cur_start])
        out.append(REDACTED)
        pos = cur_end
        cur_start, cur_end = start, end
    out.append(text[pos:cur_start])
    out.append(REDACTED)
    out.append(text[cur_end:])
    return "".join(out)


def _redact_params(text: str) -> str:
    out: list[str] = []
    pos = 0
    for match in _PARAM_NAME.finditer(text):
        if match.start() < pos:  # inside a value already removed
            continue
        name = match.group(1)
        if not _is_secret_param(name):
            continue
        value = _PARAM_VALUE.match(text, match.end())
        if value is None:
            continue
        out.append(text[pos : match.end()] + value.group(1))  # keep an opening quote
        out.append(REDACTED)
        pos = value.end()
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


@lru_cache(maxsize=1024)
def _is_secret_param(name: str) -> bool:
    if not _MAYBE_SECRET_PARAM.search(name) or name.lower() in _SAFE_NAMES:
        return False
    words = {w.lower() for w in _WORD_SPLIT.split(name) if w}
    return bool(words & _SECRET_PARAM_WORDS)


def is_secret_name(name: str) -> bool:
    if name.lower() in _SAFE_NAMES:
        return False
    words = {w.lower() for w in _WORD_SPLIT.split(name) if w}
    return bool(words & _SECRET_WORDS)


def redact_text(text: str, *, extra_secrets: Iterable[str] = (), truncate: bool = True) -> str:
    return _redact_str(text, _secrets_index(extra_secrets), truncate)


def redact(value: Any, *, extra_secrets: Iterable[str] = (), truncate: bool = True) -> Any:
    """Return a copy of `value` with secrets removed; dicts/lists are walked recursively."""
    # The configured secrets are read once per call, not once per string in `value`: a job's
    # input has dozens of strings, and re-reading them was a measurable share of a submit.
    return _redact(value, _secrets_index(extra_secrets), truncate)


def _secrets_index(extra_secrets: Iterable[str]) -> _SecretIndex | None:
    secrets = {s for s in extra_secrets if s and len(s) >= MIN_SECRET_CHARS}
    secrets.update(_known_secret_values())
    return _index(tuple(sorted(secrets))) if secrets else None


def _redact(value: Any, index: _SecretIndex | None, truncate: bool) -> Any:
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if isinstance(k, str) and is_secret_name(k) and v not in (None, "", False):
                out[k] = REDACTED
            else:
                out[k] = _redact(v, index, truncate)
        return out
    if isinstance(value, list | tuple):
        return [_redact(v, index, truncate) for v in value]
    if isinstance(value, str):
        return _redact_str(value, index, truncate)
    return value


def _redact_str(text: str, index: _SecretIndex | None, truncate: bool) -> str:
    if index is not None:
        text = _replace_spans(text, _secret_spans(text, index))
    text = _SECRET_VALUE.sub(REDACTED, text)
    text = _redact_params(text)
    if truncate and len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + f"…[truncated {len(text) - MAX_VALUE_CHARS} chars]"
    return text
