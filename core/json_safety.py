"""JSON values every store accepts: what the gateway rejects, and what the mirror rewrites.

JSON parsers hand Python values no store takes back: NaN and Infinity (also `1e400`, which
overflows to infinity) are not JSON at all, a lone surrogate (`"\\ud800"`) is not valid UTF-8,
and a NUL character is refused by Postgres `jsonb` (and breaks `->>` on a `json` column for the
whole table). Input is the client's to fix: `problems()` names each bad value's path for a 422.
Outputs come from LLMs and upstream services: `sanitized()` replaces them before the mirror
stores them. Both walk iteratively, so depth costs no recursion.
"""

from __future__ import annotations

import math
from typing import Any

REPLACEMENT = "\ufffd"


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode)"
    return None


def problems(value: Any, *, limit: int = 20) -> list[tuple[list[str | int], str]]:
    """(path, message) for each value no JSON store accepts, up to `limit`."""
    found: list[tuple[list[str | int], str]] = []
    stack: list[tuple[list[str | int], Any]] = [([], value)]
    while stack and len(found) < limit:
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            found.append(
                (path, "must be a finite number (NaN, Infinity and overflow are not JSON)")
            )
        elif isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                found.append((path, problem))
        elif isinstance(item, dict):
            for key, child in item.items():
                problem = _text_problem(key) if isinstance(key, str) else None
                if problem:
                    found.append(
                        ([*path, key.encode("utf-8", "replace").decode()], f"key {problem}")
                    )
                stack.append(([*path, key], child))
        elif isinstance(item, list | tuple):
            stack.extend(([*path, i], child) for i, child in enumerate(item))
    return found


def _clean_text(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join(REPLACEMENT if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def sanitized(value: Any) -> Any:
    """`value` with NUL and lone surrogates replaced by U+FFFD and non-finite numbers by null."""
    if not problems(value, limit=1):
        return value  # the common case: nothing to copy
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(root, 0, value)]
    while stack:
        parent, slot, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            parent[slot] = None
        elif isinstance(item, str):
            parent[slot] = _clean_text(item)
        elif isinstance(item, dict):
            copy: dict[Any, Any] = {}
            parent[slot] = copy
            for key, child in item.items():
                clean_key = _clean_text(key) if isinstance(key, str) else key
                copy[clean_key] = None
                stack.append((copy, clean_key, child))
        elif isinstance(item, list | tuple):
            items: list[Any] = [None] * len(item)
            parent[slot] = items
            stack.extend((items, i, child) for i, child in enumerate(item))
        else:
            parent[slot] = item
    return root[0]
