"""The `response_format` of an llm step, normalised once so providers see one shape.

Accepted spellings (definitions written for different SDKs use all of them):
  None | "text"                                   → plain text
  "json" | "json_object" | {"type": "json_object"} → any JSON value
  {"json_schema": S}, {"type": "json_schema", "json_schema": S}, {"schema": S}
      where S is a JSON Schema or OpenAI's {"name", "schema", "strict"} wrapper
  a bare JSON Schema ({"type": "object", "properties": ...})
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema import SchemaError
from jsonschema.validators import validator_for
from temporalio.exceptions import ApplicationError

from core.errors import ErrorContext, ErrorType

_NAME_OK = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ResponseFormat:
    kind: Literal["text", "json"] = "text"
    schema: dict[str, Any] | None = None
    name: str = "response"

    @property
    def is_json(self) -> bool:
        return self.kind == "json"


TEXT = ResponseFormat()


def _invalid(message: str) -> ApplicationError:
    return ErrorContext.of(
        ErrorType.VALIDATION_ERROR,
        message,
        retryable=False,
        details={"suggestions": ['use "text", "json" or {"json_schema": {...JSON Schema...}}']},
    ).to_application_error()


def _schema_format(wrapper: Any, default_name: str | None = None) -> ResponseFormat:
    if not isinstance(wrapper, dict):
        raise _invalid("response_format json_schema must be an object")
    name = default_name
    schema: Any = wrapper
    # OpenAI's wrapper: {"name": ..., "schema": {...}, "strict": ...}
    if isinstance(wrapper.get("schema"), dict):
        schema = wrapper["schema"]
        name = wrapper.get("name") or name
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise _invalid(f"response_format schema is not a valid JSON Schema: {exc.message}") from exc
    clean_name = _NAME_OK.sub("_", str(name or "response"))[:64] or "response"
    return ResponseFormat(kind="json", schema=schema, name=clean_name)


def parse_response_format(value: str | dict[str, Any] | None) -> ResponseFormat:
    """Raises a non-retryable VALIDATION_ERROR for a shape we can't read."""
    if value is None:
        return TEXT
    if isinstance(value, str):
        key = value.strip().lower()
        if key in ("", "text"):
            return TEXT
        if key in ("json", "json_object"):
            return ResponseFormat(kind="json")
        raise _invalid(f"unknown response_format {value!r}")
    if not isinstance(value, dict):
        raise _invalid("response_format must be a string or an object")
    kind = value.get("type")
    if "json_schema" in value:
        return _schema_format(value["json_schema"])
    if kind in ("json_object", "json"):
        return ResponseFormat(kind="json")
    if kind == "text" and "properties" not in value:
        return TEXT
    if isinstance(value.get("schema"), dict):
        return _schema_format(value)
    if kind in ("object", "array") or "properties" in value or "$schema" in value:
        return _schema_format(value)
    raise _invalid(f"unknown response_format object with keys {sorted(value)}")


def json_instruction(fmt: ResponseFormat, *, include_schema: bool) -> str:
    """System-prompt text asking for JSON; the schema is inlined when the API can't carry it."""
    text = (
        "Reply with a single valid JSON value only: no prose before or after it and no "
        "Markdown code fences."
    )
    if fmt.schema is not None and include_schema:
        text += " The JSON must conform to this JSON Schema:\n" + json.dumps(fmt.schema)
    return text


def system_with_format(
    system: str | None, fmt: ResponseFormat, *, include_schema: bool
) -> str | None:
    if not fmt.is_json:
        return system
    instruction = json_instruction(fmt, include_schema=include_schema)
    return f"{system}\n\n{instruction}" if system else instruction
