"""The `markdown_to_json` transform: markdown (usually an LLM reply) → JSON, by `schema`.

- `emergency_contacts`: `{contacts: [...], meeting_locations: [...]}`; see markdown_contacts.py.
- `sections` (the default when `schema` is omitted): the generic heading tree; see
  markdown_reading.parse_sections.

None data gives the schema's empty result; an llm step's whole output object is accepted in
place of its `content` text. Any other non-string data is an error, and so is text over
limits.MAX_INPUT_BYTES.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from workflow_defs.transforms.errors import TransformError
from workflow_defs.transforms.limits import check_text
from workflow_defs.transforms.markdown_contacts import parse_emergency_contacts
from workflow_defs.transforms.markdown_reading import parse_sections
from workflow_defs.transforms.spec import OperationSpec, Problem, deferred, kind_of

SCHEMAS: dict[str, Callable[[str], Any]] = {
    "emergency_contacts": parse_emergency_contacts,
    "sections": parse_sections,
}


def _check_markdown(config: Mapping[str, Any], at_load: bool) -> list[Problem]:
    schema = config.get("schema")
    if schema is None or deferred(schema, at_load) or schema in SCHEMAS:
        return []
    return [("config.schema", f"unknown schema {schema!r} (expected one of {', '.join(SCHEMAS)})")]


def _markdown_to_json(data: Any, config: Mapping[str, Any]) -> Any:
    parse = SCHEMAS[config.get("schema") or "sections"]
    if isinstance(data, Mapping) and isinstance(data.get("content"), str):
        data = data["content"]  # an llm step's whole output was passed instead of its text
    if data is None:
        return parse("")
    if not isinstance(data, str):
        raise TransformError(
            "markdown_to_json", "input", f"must be markdown text (got {kind_of(data)})"
        )
    return parse(check_text("markdown_to_json", data))


SPECS = [
    OperationSpec(
        "markdown_to_json",
        _markdown_to_json,
        {"schema": ("string",)},
        check=_check_markdown,
    ),
]
