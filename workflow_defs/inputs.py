"""Validate a job's input_data against a definition's `inputs` and `input_schema`.

Returns the input with defaults applied, or raises InputError listing every failing field,
so the gateway can answer 422 naming them.
"""

from __future__ import annotations

from typing import Any

from workflow_defs.schema import InputSpec, WorkflowDefinition


class InputError(ValueError):
    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors  # (field path, message)
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))


def _type_ok(spec: InputSpec, value: Any) -> bool:
    kind = spec.type
    if kind == "any" or value is None:
        return True
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


def validate_input(defn: WorkflowDefinition, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InputError([("input_data", "must be a JSON object")])
    result = dict(data)
    errors: list[tuple[str, str]] = []
    for spec in defn.inputs:
        present = spec.name in result and result[spec.name] is not None
        if not present:
            if spec.default is not None:
                result[spec.name] = spec.default
            elif spec.required:
                errors.append((spec.name, "field required"))
            continue
        value = result[spec.name]
        if not _type_ok(spec, value):
            errors.append((spec.name, f"expected {spec.type}, got {type(value).__name__}"))
        elif spec.enum is not None and value not in spec.enum:
            errors.append((spec.name, f"must be one of {spec.enum}"))
    if defn.input_schema:
        from jsonschema import Draft202012Validator

        validator = Draft202012Validator(defn.input_schema)
        for err in sorted(validator.iter_errors(result), key=lambda e: list(e.absolute_path)):
            path = ".".join(str(p) for p in err.absolute_path)
            if err.validator == "required" and isinstance(err.instance, dict):
                missing = [r for r in err.validator_value if r not in err.instance]
                for name in missing:
                    errors.append(((path + "." if path else "") + name, "field required"))
                continue
            errors.append((path or "input_data", err.message))
    if errors:
        # One message per field, in a stable order.
        seen: dict[str, str] = {}
        for field, msg in errors:
            seen.setdefault(field, msg)
        raise InputError(sorted(seen.items()))
    return result
