"""PAYLOAD_TOO_LARGE errors, shared by the interpreter and the step handlers (pure)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.errors import ErrorContext, ErrorType
    from core.payload_limits import describe


def too_large(step_id: str | None, what: str, limit: int) -> ErrorContext:
    return ErrorContext.of(
        ErrorType.PAYLOAD_TOO_LARGE,
        f"{what}, over the {describe(limit)} limit",
        retryable=False,
        step_id=step_id,
        attempt=1,
        details={
            "suggestions": [
                "select the fields you need (transform pick/extract_fields) or cap the "
                "upstream answer; a step may raise max_output_bytes up to 1 MiB"
            ]
        },
    )
