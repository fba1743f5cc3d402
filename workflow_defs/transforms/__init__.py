"""The transform library of the workflow DSL.

Pure and deterministic: transforms run inside the interpreter workflow, so nothing here does
I/O, reads the clock, env or randomness, or logs. Only the stdlib and (lazily) `jsonschema`.

The interpreter resolves `${…}` references in a step's config (except `template`,
`condition` and `expression`, which hold their own languages) and picks the data (the step's
`input`, `config.source`, or the whole namespace), then calls `apply_transform`. The loader
calls `check_transform_config` on every transform step of a definition.

Operations (parameter names are those of the earlier service):
    lists.py     filter, map, join, sort, unique, limit
    objects.py   extract_fields, pick, omit, coalesce, to_number
    text.py      regex_extract, json_parse
    template.py  template
    markdown.py  markdown_to_json (schemas in markdown_contacts.py / markdown_reading.py)
    merge.py     merge
    schema.py    validate_schema
    numeric.py   error_metrics
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workflow_defs.transforms import (
    lists,
    markdown,
    merge,
    numeric,
    objects,
    schema,
    sections,
    template,
    text,
)
from workflow_defs.transforms.errors import TransformError
from workflow_defs.transforms.spec import OperationSpec, Problem

__all__ = [
    "TRANSFORM_OPERATIONS",
    "TransformError",
    "apply_transform",
    "check_transform_config",
]

_REGISTRY: dict[str, OperationSpec] = {
    spec.name: spec
    for family in (lists, objects, text, template, markdown, merge, schema, sections, numeric)
    for spec in family.SPECS
}

TRANSFORM_OPERATIONS: frozenset[str] = frozenset(_REGISTRY)


def _unknown(operation: Any) -> str:
    return (
        f"unknown transform operation {operation!r} "
        f"(expected one of {', '.join(sorted(TRANSFORM_OPERATIONS))})"
    )


def apply_transform(operation: str, data: Any, config: Mapping[str, Any]) -> Any:
    """Run one transform on plain JSON data; raises TransformError naming operation and field."""
    spec = _REGISTRY.get(operation)
    if spec is None:
        raise TransformError(str(operation), "operation", _unknown(operation))
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise TransformError(
            operation, "config", f"must be an object (got {type(config).__name__})"
        )
    return spec.run(data, config)


def check_transform_config(operation: str, config: Mapping[str, Any]) -> list[Problem]:
    """Load-time problems as (path relative to the step's transform config, message).

    `${…}` references are not type-checked here: they are judged when the step runs.
    """
    spec = _REGISTRY.get(operation)
    if spec is None:
        return [("operation", _unknown(operation))]
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        return [("config", f"must be an object (got {type(config).__name__})")]
    return spec.problems(config, at_load=True)
