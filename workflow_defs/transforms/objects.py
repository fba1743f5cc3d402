"""Object and value transforms: extract_fields, pick, omit, coalesce, to_number.

- extract_fields: `paths` is a list of paths (result keyed by the path text) or an object of
  name → path (keyed by name). `[*]` maps over a list and yields a list. Missing → None.
- pick / omit: `keys` (or `fields`): top-level keys to keep / drop. An object gives an object,
  a list of objects gives a list (each element picked); None stays None. Picked keys that are
  absent are left out, not set to None.
- coalesce: the first value of `values` (or of the data list) that is neither null nor empty
  (empty string, whitespace, [], {}); 0 and false count as values. Nothing → `default` (None).
- to_number: text → int or float, after dropping whitespace, thousands commas, underscores,
  currency signs and a trailing %; `(12.50)` is negative (accounting). Numbers pass through; a
  list converts element-wise. Unparseable → `default` when the config has one, else an error.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from workflow_defs.transforms.errors import TransformError
from workflow_defs.transforms.paths import PathSyntaxError, check_path, get_path
from workflow_defs.transforms.spec import OperationSpec, Problem, deferred, kind_of
from workflow_defs.transforms.values import is_empty

# --- extract_fields ---------------------------------------------------------------------------


def _path_items(paths: Any) -> list[tuple[str, str, Any]]:
    """(config location, result key, path) for each entry of `paths`."""
    if isinstance(paths, Mapping):
        return [(f"config.paths.{name}", name, path) for name, path in paths.items()]
    return [(f"config.paths[{i}]", path, path) for i, path in enumerate(paths)]


def _check_extract(config: Mapping[str, Any], at_load: bool) -> list[Problem]:
    found: list[Problem] = []
    if deferred(config["paths"], at_load):
        return found
    for where, _key, path in _path_items(config["paths"]):
        if deferred(path, at_load):
            continue
        if not isinstance(path, str):
            found.append((where, f"must be a path string (got {kind_of(path)})"))
        elif error := check_path(path):
            found.append((where, error))
    return found


def _extract_fields(data: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for where, key, path in _path_items(config["paths"]):
        try:
            result[str(key)] = get_path(data, path)
        except PathSyntaxError as exc:
            raise TransformError("extract_fields", where, str(exc)) from None
    return result


# --- pick / omit ------------------------------------------------------------------------------


def _keys(config: Mapping[str, Any]) -> tuple[str, list[str]]:
    name = "keys" if config.get("keys") is not None else "fields"
    return name, config[name]


def _check_keys(config: Mapping[str, Any], at_load: bool) -> list[Problem]:
    name, keys = _keys(config)
    if not isinstance(keys, list):
        return []  # a reference, judged at run time
    return [
        (f"config.{name}[{i}]", f"must be a string (got {kind_of(key)})")
        for i, key in enumerate(keys)
        if not isinstance(key, str)
    ]


def _each_object(operation: str, data: Any, fn: Any) -> Any:
    if data is None:
        return None
    if isinstance(data, Mapping):
        return fn(data)
    if isinstance(data, list):
        out = []
        for i, element in enumerate(data):
            if not isinstance(element, Mapping):
                raise TransformError(
                    operation, "input", f"element [{i}] is {kind_of(element)}, not an object"
                )
            out.append(fn(element))
        return out
    raise TransformError(
        operation, "input", f"must be an object or a list of objects (got {kind_of(data)})"
    )


def _pick(data: Any, config: Mapping[str, Any]) -> Any:
    _name, keys = _keys(config)
    order: dict[str, int] = {}
    for i, key in enumerate(keys):
        order.setdefault(key, i)

    def pick(obj: Mapping[str, Any]) -> dict[str, Any]:
        if len(order) <= len(obj):
            return {k: obj[k] for k in order if k in obj}
        # Many keys, small objects: walk the object instead, or a long `keys` list is paid
        # again for every element of a long list.
        present = sorted((k for k in obj if k in order), key=order.__getitem__)
        return {k: obj[k] for k in present}

    return _each_object("pick", data, pick)


def _omit(data: Any, config: Mapping[str, Any]) -> Any:
    _name, keys = _keys(config)
    dropped = set(keys)
    return _each_object(
        "omit", data, lambda obj: {k: v for k, v in obj.items() if k not in dropped}
    )


# --- coalesce ---------------------------------------------------------------------------------


def _coalesce(data: Any, config: Mapping[str, Any]) -> Any:
    values = config.get("values")
    if values is None:
        if data is not None and not isinstance(data, list):
            raise TransformError(
                "coalesce", "input", f"needs config.values or a list input (got {kind_of(data)})"
            )
        values = data or []
    for value in values:
        if not is_empty(value):
            return value
    return config.get("default")


# --- to_number --------------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_MAX_INT_DIGITS = 4300


def parse_number(text: str) -> int | float | None:
    """Lenient text → number; None when it isn't one."""
    s = "".join(
        ch for ch in text.strip() if unicodedata.category(ch) != "Sc" and ch not in ",_ \u00a0"
    )
    negative = s.startswith("(") and s.endswith(")")
    if negative:
        s = s[1:-1]
    s = s.removesuffix("%")
    if not _NUMBER.fullmatch(s):
        return None
    if len(s.lstrip("+-")) > _MAX_INT_DIGITS and not any(c in s for c in ".eE"):
        return None  # what int() refuses by default, and quadratic where that guard is off
    try:
        value: int | float = float(s) if any(c in s for c in ".eE") else int(s)
    except ValueError:  # more digits than int() accepts (sys.get_int_max_str_digits)
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return -value if negative else value


def _one_number(value: Any, config: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    parsed = parse_number(value) if isinstance(value, str) else None
    if parsed is not None:
        return parsed
    if "default" in config:
        return config["default"]
    shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "…"
    raise TransformError(
        "to_number", where, f"{shown!r} is not a number (set config.default to use a fallback)"
    )


def _to_number(data: Any, config: Mapping[str, Any]) -> Any:
    if isinstance(data, list):
        return [_one_number(v, config, f"input[{i}]") for i, v in enumerate(data)]
    return _one_number(data, config, "input")


SPECS = [
    OperationSpec(
        "extract_fields",
        _extract_fields,
        {"paths": ("array", "object")},
        required=(("paths",),),
        check=_check_extract,
    ),
    OperationSpec(
        "pick",
        _pick,
        {"keys": ("array",), "fields": ("array",)},
        required=(("keys", "fields"),),
        check=_check_keys,
    ),
    OperationSpec(
        "omit",
        _omit,
        {"keys": ("array",), "fields": ("array",)},
        required=(("keys", "fields"),),
        check=_check_keys,
    ),
    OperationSpec("coalesce", _coalesce, {"values": ("array",), "default": ("any",)}),
    OperationSpec("to_number", _to_number, {"default": ("any",)}),
]
