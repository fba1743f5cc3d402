"""The `merge` transform: objects combined in order, later values win.

`sources` is a list of objects (the interpreter has already resolved `${…}` references in it).
For files of the earlier service, a string entry that is not an object is read as a path into
the data (`"weather"` → data["weather"]). Null sources (a step skipped or failed under
`continue`) are skipped. Without `sources`, the data itself must be a list of objects (or one
object, returned as a copy).

`strategy`: `shallow` (default) replaces top-level keys; `deep` merges nested objects
recursively, later wins, lists and scalars replaced whole. The result never shares structure
with the inputs, so later steps can't alias an earlier step's output.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from workflow_defs.transforms.errors import TransformError
from workflow_defs.transforms.paths import PathSyntaxError, get_path
from workflow_defs.transforms.spec import OperationSpec, Problem, deferred, kind_of

STRATEGIES = ("shallow", "deep")


def _deep_merge(target: dict[str, Any], source: Mapping[str, Any]) -> None:
    for key, value in source.items():
        current = target.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            _deep_merge(current, value)
        else:
            target[key] = copy.deepcopy(value)


def _check_merge(config: Mapping[str, Any], at_load: bool) -> list[Problem]:
    strategy = config.get("strategy")
    if strategy is not None and not deferred(strategy, at_load) and strategy not in STRATEGIES:
        return [("config.strategy", f"must be one of {', '.join(STRATEGIES)} (got {strategy!r})")]
    return []


def _resolve_source(
    data: Any, source: Any, where: str, allow_path: bool = True
) -> Mapping[str, Any] | None:
    if source is None or isinstance(source, Mapping):
        return source
    if isinstance(source, str) and allow_path:
        try:
            found = get_path(data, source)
        except PathSyntaxError:
            found = None
        if isinstance(found, Mapping):
            return found
        raise TransformError(
            "merge", where, f"{source!r} is neither an object nor a path to one in the input"
        )
    raise TransformError("merge", where, f"only objects can be merged (got {kind_of(source)})")


def _merge(data: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    deep = config.get("strategy") == "deep"
    sources = config.get("sources")
    if sources is not None:
        items = [(f"config.sources[{i}]", s) for i, s in enumerate(sources)]
        objects = [_resolve_source(data, s, where) for where, s in items]
    elif data is None:
        objects = []
    elif isinstance(data, Mapping):
        objects = [data]
    elif isinstance(data, list):
        objects = [
            _resolve_source(None, s, f"input[{i}]", allow_path=False) for i, s in enumerate(data)
        ]
    else:
        raise TransformError(
            "merge", "input", f"needs config.sources or a list of objects (got {kind_of(data)})"
        )
    merged: dict[str, Any] = {}
    for obj in objects:
        if obj is None:
            continue
        if deep:
            _deep_merge(merged, obj)
        else:
            merged.update(copy.deepcopy(dict(obj)))
    return merged


SPECS = [
    OperationSpec(
        "merge",
        _merge,
        {"sources": ("array",), "strategy": ("string",)},
        check=_check_merge,
    ),
]
