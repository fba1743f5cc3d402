"""The `validate_schema` transform: JSON Schema as a gate inside the workflow.

Valid data is returned unchanged; invalid data fails the step with the first few errors, each
with its JSON path (`$.contacts[0].fit_score: 'high' is not of type 'integer'`). The schema's
own draft (`$schema`) picks the validator, Draft 2020-12 by default. No remote `$ref` is ever
fetched: `jsonschema`'s referencing registry has no retriever, so an unknown remote ref is an
error, not I/O.

`jsonschema` is imported lazily, so runs that never validate don't pay for it, and it is
imported as a sandbox pass-through module: re-imported inside Temporal's workflow sandbox,
`attrs` (a jsonschema dependency) calls `platform.python_implementation()`, which the sandbox
forbids. Validation itself is deterministic and does no I/O, so sharing the host's module is safe.

The data is held to the transform input limit, and `uniqueItems` is checked by hashing each
element: jsonschema compares every pair of elements that can't be sorted (objects), which on
a long list of objects is quadratic and stalls the workflow.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from temporalio import workflow

from workflow_defs.transforms.errors import TransformError
from workflow_defs.transforms.limits import check_data
from workflow_defs.transforms.spec import OperationSpec, Problem, deferred

MAX_REPORTED_ERRORS = 5
MAX_MESSAGE_CHARS = 200  # jsonschema messages embed the offending value, which may be huge


def _json_path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _shorten(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "…"


def _jsonschema() -> Any:
    with workflow.unsafe.imports_passed_through():
        import jsonschema
    return jsonschema


def _identity(value: Any) -> Any:
    """Hashable stand-in, equal exactly when jsonschema's `equal` holds: true ≠ 1, 1 = 1.0."""
    if value is True or value is False:
        return ("bool", value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, Mapping):
        return ("object", frozenset((k, _identity(v)) for k, v in value.items()))
    if isinstance(value, Sequence):
        return ("array", tuple(_identity(v) for v in value))
    return ("value", value)


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[Any] = set()
    for element in instance:
        key = _identity(element)
        if key in seen:
            yield _jsonschema().ValidationError(f"{instance!r} has non-unique elements")
            return
        seen.add(key)


_extended: dict[Any, Any] = {}


def _validator_for(schema: Mapping[str, Any]) -> Any:
    jsonschema = _jsonschema()
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    if cls not in _extended:
        _extended[cls] = jsonschema.validators.extend(cls, {"uniqueItems": _unique_items})
    return _extended[cls]


def _check_schema(config: Mapping[str, Any], at_load: bool) -> list[Problem]:
    schema = config["schema"]
    if deferred(schema, at_load):
        return []
    jsonschema = _jsonschema()
    try:
        _validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [
            ("config.schema", f"not a valid JSON Schema: {exc.message} at {_json_path(exc.path)}")
        ]
    return []


def _validate_schema(data: Any, config: Mapping[str, Any]) -> Any:
    check_data("validate_schema", data)
    schema = config["schema"]
    validator = _validator_for(schema)(schema)
    try:
        errors = sorted(
            validator.iter_errors(data), key=lambda e: (list(map(str, e.path)), e.message)
        )
    except Exception as exc:  # unresolvable $ref and the like: a schema problem, not the data's
        raise TransformError("validate_schema", "config.schema", str(exc)) from None
    if not errors:
        return data
    shown = [
        f"{_json_path(e.absolute_path)}: {_shorten(e.message)}"
        for e in errors[:MAX_REPORTED_ERRORS]
    ]
    more = len(errors) - len(shown)
    suffix = f" (and {more} more)" if more > 0 else ""
    raise TransformError(
        "validate_schema", "input", "does not match config.schema: " + "; ".join(shown) + suffix
    )


SPECS = [
    OperationSpec(
        "validate_schema",
        _validate_schema,
        {"schema": ("object", "boolean")},
        required=(("schema",),),
        check=_check_schema,
    ),
]
