"""Dotted data paths for transforms: `results[*].name`, `a.b[0]`, `items.0`, `["odd key"]`.

Differs from the `${…}` reference resolver on purpose: transforms need the `[*]` wildcard
(which maps the rest of the path over a list and returns a list) and the earlier service's
`items.0` spelling for indexes. A leading `$` / `$.` is accepted (JSONPath habit). The empty
path is the data itself. Lookups never raise: absent → None (inside a wildcard, per element).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final


class _Wildcard:
    __slots__ = ()

    def __repr__(self) -> str:
        return "[*]"


WILDCARD: Final = _Wildcard()
Segment = str | int | _Wildcard

_SEGMENT = re.compile(
    r"""(?P<name>[^.\[\]"']+)
      | \[\s*(?P<index>-?\d+)\s*\]
      | \[\s*(?P<star>\*)\s*\]
      | \[\s*"(?P<dq>[^"]*)"\s*\]
      | \[\s*'(?P<sq>[^']*)'\s*\]""",
    re.VERBOSE,
)


class PathSyntaxError(ValueError):
    pass


_MAX_CACHED_PATH = 256  # paths may be resolved from data: never keep long ones alive


def parse_path(path: str) -> tuple[Segment, ...]:
    """Split a path into segments; raises PathSyntaxError with the position of the problem."""
    return _parse_cached(path) if len(path) <= _MAX_CACHED_PATH else _parse(path)


@lru_cache(maxsize=2048)
def _parse_cached(path: str) -> tuple[Segment, ...]:
    return _parse(path)


def _parse(path: str) -> tuple[Segment, ...]:
    text = path.strip()
    if text.startswith("$"):
        text = text[1:].lstrip(".")
    segments: list[Segment] = []
    pos = 0
    while pos < len(text):
        if segments and text[pos] == "." and not text.startswith("[", pos + 1):
            pos += 1
        m = _SEGMENT.match(text, pos)
        if m is None:
            raise PathSyntaxError(f"bad path {path!r} at position {pos}")
        if m.group("name") is not None:
            name = m.group("name").strip()
            if not name:
                raise PathSyntaxError(f"bad path {path!r}: empty segment at position {pos}")
            segments.append(WILDCARD if name == "*" else name)
        elif m.group("index") is not None:
            segments.append(int(m.group("index")))
        elif m.group("star") is not None:
            segments.append(WILDCARD)
        else:
            segments.append(m.group("dq") if m.group("dq") is not None else m.group("sq"))
        pos = m.end()
    if text.endswith("."):
        raise PathSyntaxError(f"bad path {path!r}: ends with '.'")
    return tuple(segments)


def check_path(path: str) -> str | None:
    """Syntax error message, or None."""
    try:
        parse_path(path)
    except PathSyntaxError as exc:
        return str(exc)
    return None


_MISSING: Final = object()


def _step(value: Any, seg: str | int) -> Any:
    if isinstance(value, Mapping):
        key = seg if isinstance(seg, str) else str(seg)
        return value[key] if key in value else _MISSING
    if isinstance(value, list):
        index: int | None = seg if isinstance(seg, int) else None
        if isinstance(seg, str) and re.fullmatch(r"-?\d+", seg):
            index = int(seg)  # `items.0`, the earlier service's spelling
        if index is not None and -len(value) <= index < len(value):
            return value[index]
    return _MISSING


def _walk(value: Any, segments: tuple[Segment, ...], start: int) -> Any:
    for i in range(start, len(segments)):
        seg = segments[i]
        if isinstance(seg, _Wildcard):
            if isinstance(value, list):
                items = value
            elif isinstance(value, Mapping):
                items = list(value.values())
            else:
                return _MISSING
            return [_none_if_missing(_walk(item, segments, i + 1)) for item in items]
        value = _step(value, seg)
        if value is _MISSING:
            return _MISSING
    return value


def _none_if_missing(value: Any) -> Any:
    return None if value is _MISSING else value


def get_path(data: Any, path: str | tuple[Segment, ...]) -> Any:
    """Value at `path`, or None when absent. Raises PathSyntaxError for malformed paths."""
    segments = parse_path(path) if isinstance(path, str) else path
    return _none_if_missing(_walk(data, segments, 0))


def has_path(data: Any, path: str) -> bool:
    return _walk(data, parse_path(path), 0) is not _MISSING


def strip_item_prefix(path: str) -> str:
    """`item.rating` → `rating`, `item` → ``: element-relative paths may name the element."""
    text = path.strip()
    if text == "item":
        return ""
    if text.startswith("item.") or text.startswith("item["):
        return text[5:] if text[4] == "." else text[4:]
    return text
