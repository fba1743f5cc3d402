"""A deterministic sample value for a JSON Schema, so the mock provider's JSON validates.

Covers what step schemas use in practice: object (all properties), array (minItems),
string (enum/const/format/minLength), number/integer (bounds), boolean, null, anyOf/oneOf
(first branch), allOf (merged objects) and local `$ref`s. Patterns aren't solved.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

_MAX_DEPTH = 12
_FORMAT_SAMPLES = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "hostname": "example.com",
}


def sample_for_schema(
    schema: Any,
    *,
    root: dict[str, Any] | None = None,
    name: str = "value",
    depth: int = 0,
    seed: int | None = None,
) -> Any:
    """`seed`: pick enum values by it (and the property's name) instead of always the first,
    so different inputs get different answers; None keeps the first."""
    root = root if root is not None else (schema if isinstance(schema, dict) else {})
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    if "$ref" in schema:
        return sample_for_schema(
            _resolve(root, schema["$ref"]), root=root, name=name, depth=depth + 1, seed=seed
        )
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        options = schema["enum"]
        if seed is None:
            return options[0]
        return options[(seed ^ zlib.crc32(name.encode())) % len(options)]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [
                o for o in schema[key] if not (isinstance(o, dict) and o.get("type") == "null")
            ]
            return sample_for_schema(
                (options or schema[key])[0], root=root, name=name, depth=depth + 1, seed=seed
            )
    if schema.get("allOf"):
        return sample_for_schema(
            _merge_all_of(schema), root=root, name=name, depth=depth + 1, seed=seed
        )
    kind = _type_of(schema)
    if kind == "object":
        props = schema.get("properties") or {}
        obj = {
            k: sample_for_schema(v, root=root, name=k, depth=depth + 1, seed=seed)
            for k, v in props.items()
        }
        for req in schema.get("required") or []:
            obj.setdefault(req, f"mock {req}")
        return obj
    if kind == "array":
        items = schema.get("items")
        if isinstance(items, list):  # tuple form (draft 4-7)
            return [
                sample_for_schema(i, root=root, name=name, depth=depth + 1, seed=seed)
                for i in items
            ]
        count = max(1, int(schema.get("minItems") or 0))
        item = (
            sample_for_schema(items or {}, root=root, name=name, depth=depth + 1, seed=seed)
            if items
            else f"mock {name}"
        )
        return [item] * count
    if kind in ("number", "integer"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, name)


def _type_of(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind:
        return str(kind)
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _string(schema: dict[str, Any], name: str) -> str:
    value = _FORMAT_SAMPLES.get(schema.get("format", ""), f"mock {name}")
    min_len, max_len = schema.get("minLength"), schema.get("maxLength")
    if isinstance(min_len, int) and len(value) < min_len:
        value = value + "x" * (min_len - len(value))
    if isinstance(max_len, int) and len(value) > max_len:
        value = value[:max_len]
    return value


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    low = schema.get("minimum")
    high = schema.get("maximum")
    ex_low = schema.get("exclusiveMinimum")
    ex_high = schema.get("exclusiveMaximum")
    value: float = 0
    if isinstance(low, int | float):
        value = low
    if isinstance(ex_low, int | float) and value <= ex_low:
        value = ex_low + 1
    if isinstance(high, int | float) and value > high:
        value = high
    if isinstance(ex_high, int | float) and value >= ex_high:
        value = ex_high - 1
    multiple = schema.get("multipleOf")
    if isinstance(multiple, int | float) and multiple > 0:
        value = math.ceil(value / multiple) * multiple
    return math.ceil(value) if integer else value


def _merge_all_of(schema: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key == "properties":
                merged.setdefault("properties", {}).update(value)
            elif key == "required":
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _resolve(root: dict[str, Any], ref: str) -> Any:
    # Only local refs ("#/$defs/x", "#/definitions/x"); anything else samples as a string.
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node
