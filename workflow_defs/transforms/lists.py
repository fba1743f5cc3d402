"""List transforms: filter, map, join, sort, unique, limit.

All take the list from the data or from `config.array_path` inside it; None data is an empty
list. Element-relative paths (`key`, `field`, map expressions) may start with `item.`.

- filter: `condition` in the safe expression language (workflow_defs.expressions), evaluated
  with `item` bound to the element; a dict element's own keys are also visible, so the earlier
  service's `rating >= 4` spelling works too.
- map: `expression` "item.f" with optional `.upper()` `.lower()` `.strip()` `.title()` calls
  (chainable; applied to the value's text, None stays None), or an object of name → expression
  producing one object per element.
- join: `separator` (default ", "), optional `field` per element; None elements are skipped,
  non-strings join as JSON.
- sort: `key` (a path, or a list of paths for ties), `reverse`; None sorts last either way;
  mixed kinds order numbers < strings < booleans < arrays < objects. Stable.
- unique: optional `key`; first occurrence wins, order kept; elements whose key is missing or
  null are all kept (they are not known to be duplicates).
- limit: `count` (or `limit`) elements after `offset`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from workflow_defs.expressions import ExpressionError, check_condition, compile_condition
from workflow_defs.references import walk
from workflow_defs.transforms.errors import TransformError
from workflow_defs.transforms.limits import OutputBudget
from workflow_defs.transforms.paths import check_path, get_path, strip_item_prefix
from workflow_defs.transforms.spec import OperationSpec, Problem, deferred, path_problems
from workflow_defs.transforms.values import canonical, order_key, select_list, to_text

# --- filter -----------------------------------------------------------------------------------


def _check_filter(config: Mapping[str, Any], at_load: bool) -> list[Problem]:
    found = path_problems(config, ("array_path",), at_load)
    error = check_condition(config["condition"])
    if error:
        found.append(("config.condition", error))
    return found


# The interpreter passes the run's namespace (input/steps/context) as `_scope`, so a condition
# can compare items with run data: `item.rating >= ${input.min_rating}`.
SCOPE_KEY = "_scope"


def _filter(data: Any, config: Mapping[str, Any]) -> list[Any]:
    try:
        # Once per step, not per element: a condition longer than the compile cache keeps
        # would otherwise be parsed again for every element.
        condition = compile_condition(config["condition"])
    except ExpressionError as exc:
        raise TransformError("filter", "config.condition", str(exc)) from None
    base: Mapping[str, Any] = config.get(SCOPE_KEY) or {}
    kept = []
    for element in select_list("filter", data, config):
        own = element if isinstance(element, Mapping) else {}
        scope = {**base, **own, "item": element}
        try:
            matched = condition.evaluate(partial(walk, scope))
        except Exception as exc:  # the language promises no errors; keep the step's story clear
            raise TransformError("filter", "config.condition", str(exc)) from None
        if matched:
            kept.append(element)
    return kept


# --- map --------------------------------------------------------------------------------------

_METHODS: dict[str, Callable[[str], str]] = {
    "upper": str.upper,
    "lower": str.lower,
    "strip": str.strip,
    "title": str.title,
}
_METHOD_NAME = re.compile(r"[A-Za-z_]\w*")


def _call_at_end(text: str, end: int) -> tuple[str, int] | None:
    """(name, start of its dot) of the `.name( )` call ending `text[:end]` (trailing space
    allowed), or None."""
    close = end - 1
    while close >= 0 and text[close].isspace():
        close -= 1
    if close < 0 or text[close] != ")":
        return None
    open_ = close - 1
    while open_ >= 0 and text[open_].isspace():
        open_ -= 1
    if open_ < 0 or text[open_] != "(":
        return None
    dot = text.rfind(".", 0, open_)
    if dot < 0 or not _METHOD_NAME.fullmatch(text, dot + 1, open_):
        return None
    return text[dot + 1 : open_], dot


def _parse_expression(text: str) -> tuple[str, list[str]]:
    """`item.name.strip().upper()` → ("name", ["strip", "upper"]). Raises ValueError."""
    rest = text.strip()
    # Calls are peeled off the end by index; slicing or searching the whole text once per call
    # is quadratic in an expression of thousands of `.upper()`.
    end = len(rest)
    methods: list[str] = []
    while (name := _call_at_end(rest, end)) is not None:
        if name[0] not in _METHODS:
            supported = ", ".join(f".{method}()" for method in _METHODS)
            raise ValueError(f"unsupported call .{name[0]}() (supported: {supported})")
        methods.append(name[0])
        end = name[1]
    methods.reverse()
    rest = rest[:end]
    if "(" in rest or ")" in rest:
        raise ValueError(f"expression {text!r} is not a path with optional .upper()-style calls")
    path = strip_item_prefix(rest)
    error = check_path(path) if path else None
    if error:
        raise ValueError(error)
    return path, methods


def _expressions(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(config path, expression text) pairs of a map config."""
    expr = config["expression"]
    if isinstance(expr, Mapping):
        return [(f"config.expression.{name}", text) for name, text in expr.items()]
    return [("config.expression", expr)]


def _check_map(config: Mapping[str, Any], at_load: bool) -> list[Problem]:
    found = path_problems(config, ("array_path",), at_load)
    for where, text in _expressions(config):
        if not isinstance(text, str):
            found.append((where, f"must be a string expression like 'item.name' (got {text!r})"))
            continue
        try:
            _parse_expression(text)
        except ValueError as exc:
            found.append((where, str(exc)))
    return found


def _eval_expression(element: Any, path: str, methods: list[str]) -> Any:
    value = get_path(element, path)
    if not methods or value is None:
        return value
    text = to_text(value)
    for name in methods:
        text = _METHODS[name](text)
    return text


def _map(data: Any, config: Mapping[str, Any]) -> list[Any]:
    expr = config["expression"]
    elements = select_list("map", data, config)
    if isinstance(expr, Mapping):
        compiled = {name: _parse_expression(text) for name, text in expr.items()}
        return [
            {name: _eval_expression(el, path, calls) for name, (path, calls) in compiled.items()}
            for el in elements
        ]
    path, calls = _parse_expression(expr)
    return [_eval_expression(el, path, calls) for el in elements]


# --- join, sort, unique, limit ----------------------------------------------------------------


def _element_path(config: Mapping[str, Any], name: str) -> str | None:
    value = config.get(name)
    return strip_item_prefix(value) if isinstance(value, str) else None


def _check_element_paths(
    config: Mapping[str, Any], at_load: bool, names: tuple[str, ...]
) -> list[Problem]:
    found = path_problems(config, ("array_path",), at_load)
    for name in names:
        value = config.get(name)
        texts = value if isinstance(value, list) else [value]
        for i, text in enumerate(texts):
            if not isinstance(text, str) or deferred(text, at_load):
                if text is not None and not isinstance(text, str):
                    where = f"config.{name}[{i}]" if isinstance(value, list) else f"config.{name}"
                    found.append((where, f"must be a path string (got {text!r})"))
                continue
            error = check_path(strip_item_prefix(text))
            if error:
                found.append((f"config.{name}", error))
    return found


def _join(data: Any, config: Mapping[str, Any]) -> str:
    separator = config.get("separator")
    separator = ", " if separator is None else separator
    field = _element_path(config, "field")
    budget = OutputBudget("join")
    parts: list[str] = []
    for element in select_list("join", data, config):
        value = get_path(element, field) if field else element
        if value is not None:
            if parts:
                budget.spend(separator)  # a long separator times many elements adds up
            parts.append(budget.spend(to_text(value)))
    return separator.join(parts)


def _sort(data: Any, config: Mapping[str, Any]) -> list[Any]:
    reverse = bool(config.get("reverse", False))
    key = config.get("key")
    keys = [strip_item_prefix(k) for k in (key if isinstance(key, list) else [key] if key else [])]
    elements = select_list("sort", data, config)
    if not keys:
        return sorted(elements, key=lambda el: order_key(el, reverse), reverse=reverse)
    return sorted(
        elements,
        key=lambda el: tuple(order_key(get_path(el, k) if k else el, reverse) for k in keys),
        reverse=reverse,
    )


def _unique(data: Any, config: Mapping[str, Any]) -> list[Any]:
    key = _element_path(config, "key")
    seen: set[str] = set()
    kept = []
    for element in select_list("unique", data, config):
        value = get_path(element, key) if key else element
        if key and value is None:
            kept.append(element)
            continue
        identity = canonical(value)
        if identity not in seen:
            seen.add(identity)
            kept.append(element)
    return kept


def _check_limit(config: Mapping[str, Any], at_load: bool) -> list[Problem]:
    found = path_problems(config, ("array_path",), at_load)
    for name in ("count", "limit", "offset"):
        value = config.get(name)
        if isinstance(value, int) and value < 0:
            found.append((f"config.{name}", f"must be 0 or more (got {value})"))
    return found


def _limit(data: Any, config: Mapping[str, Any]) -> list[Any]:
    count = config.get("count")
    count = config["limit"] if count is None else count
    offset = config.get("offset") or 0
    return select_list("limit", data, config)[offset : offset + count]


SPECS = [
    OperationSpec(
        "filter",
        _filter,
        {"condition": ("string",), "array_path": ("string",)},
        required=(("condition",),),
        check=_check_filter,
    ),
    OperationSpec(
        "map",
        _map,
        {"expression": ("string", "object"), "array_path": ("string",)},
        required=(("expression",),),
        check=_check_map,
    ),
    OperationSpec(
        "join",
        _join,
        {"separator": ("string",), "field": ("string",), "array_path": ("string",)},
        check=lambda c, at_load: _check_element_paths(c, at_load, ("field",)),
    ),
    OperationSpec(
        "sort",
        _sort,
        {"key": ("string", "array"), "reverse": ("boolean",), "array_path": ("string",)},
        check=lambda c, at_load: _check_element_paths(c, at_load, ("key",)),
    ),
    OperationSpec(
        "unique",
        _unique,
        {"key": ("string",), "array_path": ("string",)},
        check=lambda c, at_load: _check_element_paths(c, at_load, ("key",)),
    ),
    OperationSpec(
        "limit",
        _limit,
        {
            "count": ("integer",),
            "limit": ("integer",),
            "offset": ("integer",),
            "array_path": ("string",),
        },
        required=(("count", "limit"),),
        check=_check_limit,
    ),
]
