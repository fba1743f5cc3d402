"""Reading JSON out of a model's reply and checking it against the step's schema.

Models wrap JSON in ```json fences or put a sentence before it even when told not to, so the
parser looks past both before declaring the reply invalid. Whatever is still wrong is phrased
as a list of errors the model can act on in the repair loop.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema.validators import validator_for

MAX_ERRORS = 10
MAX_ERROR_CHARS = 300

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\r?\n?(.*?)```", re.DOTALL)
_decoder = json.JSONDecoder()


class JsonReplyError(ValueError):
    """The reply isn't acceptable JSON; `errors` are short, model-readable reasons."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _try_whole(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def _first_embedded(text: str) -> tuple[bool, Any]:
    # Try each '{' / '[' in order: prose like "see [1]" fails to decode and is skipped.
    for match in re.finditer(r"[{\[]", text):
        try:
            value, _end = _decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        return True, value
    return False, None


def parse_json_reply(text: str) -> Any:
    """The JSON value in `text`; raises JsonReplyError when there is none."""
    stripped = text.strip().lstrip("\ufeff")
    if not stripped:
        raise JsonReplyError(["the reply was empty; expected a JSON value"])
    ok, value = _try_whole(stripped)
    if ok:
        return value
    for fence in _FENCE.finditer(stripped):
        ok, value = _try_whole(fence.group(2).strip())
        if ok:
            return value
    # An unterminated fence (reply cut off or sloppy): drop the opening line.
    if stripped.startswith("```"):
        ok, value = _try_whole(stripped.split("\n", 1)[-1].rstrip("`").strip())
        if ok:
            return value
    ok, value = _first_embedded(stripped)
    if ok:
        return value
    try:
        json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise JsonReplyError(
            [f"the reply is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]
        ) from None
    raise JsonReplyError(
        ["the reply is not valid JSON"]
    )  # pragma: no cover - loads succeeded above


def _path_of(error: Any) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def schema_errors(data: Any, schema: dict[str, Any]) -> list[str]:
    """Validator messages as `$.path: message`, most shallow first, bounded in count and size."""
    validator = validator_for(schema)(schema)
    errors = sorted(
        validator.iter_errors(data), key=lambda e: (len(e.absolute_path), str(e.message))
    )
    out = []
    for err in errors[:MAX_ERRORS]:
        message = f"{_path_of(err)}: {err.message}"
        if len(message) > MAX_ERROR_CHARS:
            message = message[:MAX_ERROR_CHARS] + "…"
        out.append(message)
    if len(errors) > MAX_ERRORS:
        out.append(f"… and {len(errors) - MAX_ERRORS} more errors")
    return out


def parse_and_validate(text: str, schema: dict[str, Any] | None) -> Any:
    data = parse_json_reply(text)
    if schema is not None:
        errors = schema_errors(data, schema)
        if errors:
            raise JsonReplyError(errors)
    return data


def repair_message(errors: list[str], *, truncated: bool = False) -> str:
    """The user turn that asks the model to fix its previous reply."""
    lines = ["Your previous reply was not acceptable. Problems found:"]
    lines += [f"- {e}" for e in errors]
    if truncated:
        lines.append("- the reply was cut off by the token limit; answer more concisely")
    lines.append(
        "Reply again with only the corrected JSON value: no explanation and no code fences."
    )
    return "\n".join(lines)
