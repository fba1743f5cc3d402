"""`${…}` references: parsing paths and resolving them against the run's namespace.

Pure and deterministic: the interpreter calls this inside the workflow sandbox, on text that
may come from users or LLMs, so every scan here is linear in the text.

- A string that is exactly one `${…}` keeps the referenced value's JSON type.
- Inside longer text, values are interpolated: strings as is, numbers as text, objects/lists as
  JSON, booleans `true`/`false`, null `null`; a path that is absent becomes empty text.
- A path absent at run time resolves to None and is reported in `warnings`, never an exception.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

# The path is group 1 with surrounding whitespace: `ref_path(m)` strips it. Stripping in the
# pattern (`\s*([^{}]*?)\s*`) backtracks cubically on `${` followed by a long run of spaces.
REF_PATTERN = re.compile(r"\$\{([^{}]*+)\}")
_SEGMENT = re.compile(
    r"([A-Za-z_][A-Za-z0-9_\-]*)|\[(-?\d+)\]|\[\*\]|\[\"([^\"]*)\"\]|\['([^']*)'\]"
)
ROOTS = ("input", "steps", "context")
# What `${context.…}` holds; cost_usd and tokens are the job's llm spend so far (the budget).
CONTEXT_KEYS = (
    "job_id",
    "workflow_name",
    "workflow_version",
    "started_at",
    "run_id",
    "cost_usd",
    "tokens",
)

Path = list[str | int]
_MISSING = object()


class ReferenceSyntaxError(ValueError):
    pass


def ref_path(m: re.Match[str]) -> str:
    """The path text of a REF_PATTERN match, without surrounding whitespace."""
    return m.group(1).strip()


_path_cache: dict[str, tuple[str | int, ...]] = {}
_MAX_CACHED_PATH = 256  # longer paths are parsed each time: the cache must stay small


def parse_path(text: str) -> Path:
    """`input.a.b[0]` → ["input", "a", "b", 0]. Raises ReferenceSyntaxError."""
    cached = _path_cache.get(text)
    if cached is not None:
        return list(cached)
    segments: Path = []
    pos = 0
    stripped = text.strip()
    if not stripped:
        raise ReferenceSyntaxError("empty reference")
    while pos < len(stripped):
        dotted = bool(segments) and stripped[pos] == "."
        if dotted:
            pos += 1
        m = _SEGMENT.match(stripped, pos)
        # A name follows a dot (or starts the path); a bracket never does: `a.[0]`, `a[0]b` are bad.
        if not m or m.end() == pos or (m.group(1) is not None) != (dotted or not segments):
            raise ReferenceSyntaxError(f"bad reference path {text!r} at position {pos}")
        if m.group(1) is not None:
            segments.append(m.group(1))
        elif m.group(2) is not None:
            segments.append(int(m.group(2)))
        elif m.group(0) == "[*]":
            raise ReferenceSyntaxError(f"wildcard [*] is not allowed in references: {text!r}")
        else:
            segments.append(m.group(3) if m.group(3) is not None else m.group(4))
        pos = m.end()
    if len(_path_cache) < 10_000 and len(text) <= _MAX_CACHED_PATH:
        _path_cache[text] = tuple(segments)
    return segments


def format_path(path: Path) -> str:
    out = ""
    for seg in path:
        out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else seg)
    return out


def walk(value: Any, path: Path) -> Any:
    """Follow `path` into `value`; returns _MISSING when any segment is absent."""
    for seg in path:
        if isinstance(seg, int):
            if isinstance(value, list) and -len(value) <= seg < len(value):
                value = value[seg]
            else:
                return _MISSING
        elif isinstance(value, Mapping) and seg in value:
            value = value[seg]
        else:
            return _MISSING
    return value


def is_missing(value: Any) -> bool:
    return value is _MISSING


def to_text(value: Any) -> str:
    """How a value reads inside longer text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False)


Lookup = Callable[[Path], Any]  # returns _MISSING when absent


class Resolver:
    """Resolves references in JSON-like values against a namespace, collecting warnings."""

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.namespace = namespace
        self.warnings: list[str] = []

    def lookup(self, path: Path) -> Any:
        value = walk(self.namespace, path)
        if value is _MISSING:
            self.warnings.append(f"${{{format_path(path)}}} is not set; used null")
        return value

    def resolve(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.resolve_string(value)
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def resolve_string(self, text: str) -> Any:
        if "${" not in text:
            return text
        whole = REF_PATTERN.fullmatch(text)
        if whole:
            value = self.lookup(parse_path(ref_path(whole)))
            return None if value is _MISSING else value

        def _sub(m: re.Match[str]) -> str:
            value = self.lookup(parse_path(ref_path(m)))
            return "" if value is _MISSING else to_text(value)

        return REF_PATTERN.sub(_sub, text)


def find_references(value: Any) -> list[tuple[str, Path]]:
    """Every `${…}` in a JSON-like value as (raw text, parsed path); raises on bad syntax."""
    found: list[tuple[str, Path]] = []
    if isinstance(value, str):
        for m in REF_PATTERN.finditer(value):
            found.append((m.group(0), parse_path(ref_path(m))))
    elif isinstance(value, dict):
        for v in value.values():
            found.extend(find_references(v))
    elif isinstance(value, list):
        for v in value:
            found.extend(find_references(v))
    return found
