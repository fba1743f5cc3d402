"""Size limits that keep every payload of a run under what Temporal accepts.

Temporal rejects a single payload over 2 MiB (and a workflow task whose commands exceed its
gRPC limit). A run that produced one would fail its workflow task on every attempt and stay
open forever, so the interpreter measures what it is about to hand to Temporal and fails the
step (or the job) with PAYLOAD_TOO_LARGE instead. Sizes are of the JSON the data converter
writes: control characters escaped as `\\u00XX` count six bytes each, as they do on the wire.

Pure: used by workflow code.
"""

from __future__ import annotations

from typing import Any

import pydantic_core

KIB = 1024
MIB = 1024 * KIB
# One step's output, unless the step sets `max_output_bytes` (at most STEP_OUTPUT_CEILING).
STEP_OUTPUT_DEFAULT = 256 * KIB
STEP_OUTPUT_CEILING = 1 * MIB
# What one activity may be handed (a rendered prompt, a request body).
ACTIVITY_INPUT_LIMIT = 1 * MIB
# The job's result: output, error and every step record. The mirror write carries the same.
RESULT_LIMIT = 1 * MIB + 512 * KIB
# A callback carries the output twice (`output` and `result.output`); above this it carries a
# pointer to GET /jobs/{id} instead.
CALLBACK_LIMIT = 1 * MIB + 512 * KIB


def json_size(value: Any) -> int:
    """Bytes of `value` as the pydantic data converter serialises it."""
    return len(pydantic_core.to_json(value))


def describe(size: int) -> str:
    return f"{size / KIB:.0f} KiB" if size < MIB else f"{size / MIB:.2f} MiB"
