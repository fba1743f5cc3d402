"""Value helpers shared by the transform families: text rendering, canonical keys, ordering."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from workflow_defs.transforms.errors import TransformError
from workflow_defs.transforms.limits import check_data
from workflow_defs.transforms.paths import PathSyntaxError, get_path
from workflow_defs.transforms.spec import kind_of


def to_text(value: Any) -> str:
    """How a value reads inside text: strings as is, JSON for the rest, None as empty text.

    Objects and lists render as single-line JSON with the usual `, ` / `: ` separators: compact
    enough for a prompt, still readable, and non-ASCII stays as written.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False, default=str)


def canonical(value: Any) -> str:
    """Stable identity of a JSON value: key order ignored, `1` ≠ `true` ≠ `"1"`."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | Mapping):
        return len(value) == 0
    return False


# Mixed lists sort by kind first so comparing a number with a string never raises.
_RANK = {"integer": 0, "number": 0, "string": 1, "boolean": 2, "array": 3, "object": 4}


def order_key(value: Any, nulls_first: bool) -> tuple[Any, ...]:
    """Sort key for any JSON value. `nulls_first` flips where None lands, so that a reversed
    sort (which also reverses this flag's effect) still puts None last."""
    if value is None:
        return (0 if nulls_first else 1, 0, 0, "")
    kind = kind_of(value)
    rank = _RANK.get(kind, 5)
    flag = 1 if nulls_first else 0
    if kind in ("integer", "number"):
        return (flag, rank, value, "")
    if kind == "string":
        return (flag, rank, 0, value)
    if kind == "boolean":
        return (flag, rank, int(value), "")
    return (flag, rank, 0, canonical(value))


def select_list(operation: str, data: Any, config: Mapping[str, Any]) -> list[Any]:
    """The list an operation works on: `data`, or the list at `config.array_path` inside it.

    None (an upstream step skipped or failed under `continue`) counts as an empty list. The
    list is held to the input limit (limits.MAX_INPUT_CHARS, as JSON).
    """
    path = config.get("array_path")
    target = data
    if isinstance(path, str) and path.strip():
        try:
            target = get_path(data, path)
        except PathSyntaxError as exc:
            raise TransformError(operation, "config.array_path", str(exc)) from None
    if target is None:
        return []
    if isinstance(target, list | tuple):
        return list(check_data(operation, target))
    if isinstance(path, str) and path.strip():
        raise TransformError(
            operation, "config.array_path", f"{path!r} is {kind_of(target)}, not a list"
        )
    hint = "; set config.array_path to the list inside it" if isinstance(target, Mapping) else ""
    raise TransformError(operation, "input", f"must be a list (got {kind_of(target)}){hint}")
