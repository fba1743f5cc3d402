"""Hard size limits of the transforms, which run inside the workflow.

A transform has no timeout of its own: it runs in the workflow task, where a slow one trips
Temporal's deadlock detector and blocks the run. Every operation is linear (or n log n) in the
data it scans, and that data is capped here, so the worst case is a fraction of a second:

- MAX_INPUT_CHARS: the text an operation reads (markdown, regex and JSON text) or, for the
  list operations and `template` over a list, the list as JSON. Over it, the step fails with
  TRANSFORM_ERROR naming the size and the limit.
- MAX_OUTPUT_CHARS: what `template` and `join` may produce. No step may keep more than 1 MiB
  (the interpreter's output ceiling), so stopping there loses nothing and keeps a small input
  from being multiplied into gigabytes first.

The numbers are part of the workflow code: changing them changes what a replayed run does.
"""

from __future__ import annotations

import json
from typing import Any

from workflow_defs.transforms.errors import TransformError

MAX_INPUT_CHARS = 1_000_000
MAX_OUTPUT_CHARS = 1024 * 1024


def check_text(operation: str, text: str, field: str = "input") -> str:
    if len(text) > MAX_INPUT_CHARS:
        raise TransformError(
            operation,
            field,
            f"is {len(text):,} characters, over the {MAX_INPUT_CHARS:,}-character limit of a "
            f"transform's input",
        )
    return text


def json_chars(value: Any) -> int:
    try:
        return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))
    except (RecursionError, ValueError):  # nested too deep to serialise: too big either way
        return MAX_INPUT_CHARS + 1


def check_data(operation: str, value: Any, field: str = "input") -> Any:
    size = json_chars(value)
    if size > MAX_INPUT_CHARS:
        raise TransformError(
            operation,
            field,
            f"is {size:,} characters as JSON, over the {MAX_INPUT_CHARS:,}-character limit of "
            f"a transform's input",
        )
    return value


class OutputBudget:
    """Counts the characters an operation has produced; raises once past MAX_OUTPUT_CHARS."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.used = 0

    def spend(self, text: str) -> str:
        self.used += len(text)
        if self.used > MAX_OUTPUT_CHARS:
            raise TransformError(
                self.operation,
                None,
                f"the result would be over {MAX_OUTPUT_CHARS:,} characters, more than a step "
                f"may keep",
            )
        return text
