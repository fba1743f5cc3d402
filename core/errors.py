"""Error taxonomy: one ErrorContext shape on every surface.

Activities raise `ErrorContext(...).to_application_error()`; the interpreter turns whatever
failure Temporal hands it back into an ErrorContext with `from_failure`. Both are pure, so the
workflow sandbox can use this module.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    TimeoutError,
)

from core.redaction import redact, redact_text


class ErrorCategory(StrEnum):
    USER_ERROR = "USER_ERROR"
    CONFIG_ERROR = "CONFIG_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    EXTERNAL_ERROR = "EXTERNAL_ERROR"


class ErrorType(StrEnum):
    # The workflow or its input is wrong: retrying can't help.
    VALIDATION_ERROR = "VALIDATION_ERROR"
    DEFINITION_ERROR = "DEFINITION_ERROR"
    TRANSFORM_ERROR = "TRANSFORM_ERROR"
    EXPRESSION_ERROR = "EXPRESSION_ERROR"
    URL_BLOCKED = "URL_BLOCKED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    # An llm call that could cross a cost/token budget was not made.
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
    # The deployment is wrong (missing key, rejected credentials).
    CONFIG_ERROR = "CONFIG_ERROR"
    AUTH_ERROR = "AUTH_ERROR"
    # The other side said no or failed.
    UPSTREAM_REJECTED = "UPSTREAM_REJECTED"
    UPSTREAM_NOT_FOUND = "UPSTREAM_NOT_FOUND"
    UPSTREAM_ERROR = "UPSTREAM_ERROR"
    RATE_LIMITED = "RATE_LIMITED"
    TIMEOUT = "TIMEOUT"
    CONNECTION_ERROR = "CONNECTION_ERROR"
    OUTPUT_INVALID = "OUTPUT_INVALID"
    # Ours.
    WORKFLOW_TIMEOUT = "WORKFLOW_TIMEOUT"
    TERMINATED = "TERMINATED"
    CANCELLED = "CANCELLED"
    DATABASE_ERROR = "DATABASE_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"


CATEGORY_OF: dict[ErrorType, ErrorCategory] = {
    ErrorType.VALIDATION_ERROR: ErrorCategory.USER_ERROR,
    ErrorType.DEFINITION_ERROR: ErrorCategory.USER_ERROR,
    ErrorType.TRANSFORM_ERROR: ErrorCategory.USER_ERROR,
    ErrorType.EXPRESSION_ERROR: ErrorCategory.USER_ERROR,
    ErrorType.URL_BLOCKED: ErrorCategory.USER_ERROR,
    ErrorType.PAYLOAD_TOO_LARGE: ErrorCategory.USER_ERROR,
    ErrorType.BUDGET_EXCEEDED: ErrorCategory.USER_ERROR,
    ErrorType.CONFIG_ERROR: ErrorCategory.CONFIG_ERROR,
    ErrorType.AUTH_ERROR: ErrorCategory.CONFIG_ERROR,
    ErrorType.UPSTREAM_REJECTED: ErrorCategory.EXTERNAL_ERROR,
    ErrorType.UPSTREAM_NOT_FOUND: ErrorCategory.EXTERNAL_ERROR,
    ErrorType.UPSTREAM_ERROR: ErrorCategory.EXTERNAL_ERROR,
    ErrorType.RATE_LIMITED: ErrorCategory.EXTERNAL_ERROR,
    ErrorType.TIMEOUT: ErrorCategory.EXTERNAL_ERROR,
    ErrorType.CONNECTION_ERROR: ErrorCategory.EXTERNAL_ERROR,
    ErrorType.OUTPUT_INVALID: ErrorCategory.EXTERNAL_ERROR,
    ErrorType.WORKFLOW_TIMEOUT: ErrorCategory.SYSTEM_ERROR,
    ErrorType.TERMINATED: ErrorCategory.SYSTEM_ERROR,
    ErrorType.CANCELLED: ErrorCategory.USER_ERROR,
    ErrorType.DATABASE_ERROR: ErrorCategory.SYSTEM_ERROR,
    ErrorType.INTERNAL_ERROR: ErrorCategory.SYSTEM_ERROR,
}


class ErrorDetails(BaseModel):
    service: str | None = None
    operation: str | None = None
    provider: str | None = None
    model: str | None = None
    status_code: int | None = None
    inputs: Any = None
    config: Any = None
    # BUDGET_EXCEEDED: which budget, its limit, the spend so far and the call's estimate.
    budget: dict[str, Any] | None = None
    suggestions: list[str] = Field(default_factory=list)


class ErrorContext(BaseModel):
    type: str
    category: str
    message: str
    retryable: bool
    retry_after: float | None = None
    step_id: str | None = None
    attempt: int | None = None
    details: ErrorDetails = Field(default_factory=ErrorDetails)

    @classmethod
    def of(
        cls,
        error_type: ErrorType,
        message: str,
        *,
        retryable: bool | None = None,
        **kwargs: Any,
    ) -> ErrorContext:
        if retryable is None:
            retryable = CATEGORY_OF[error_type] in (
                ErrorCategory.EXTERNAL_ERROR,
                ErrorCategory.SYSTEM_ERROR,
            ) and error_type not in (ErrorType.UPSTREAM_REJECTED, ErrorType.UPSTREAM_NOT_FOUND)
        details = kwargs.pop("details", None) or ErrorDetails()
        if isinstance(details, dict):
            details = ErrorDetails(**details)
        return cls(
            type=error_type.value,
            category=CATEGORY_OF[error_type].value,
            message=message,
            retryable=retryable,
            details=details,
            **kwargs,
        ).redacted()

    def redacted(self) -> ErrorContext:
        data = self.model_dump()
        message = redact_text(data.pop("message"), truncate=False)
        if len(message) > 1000:
            message = message[:1000] + "…"
        cleaned = redact(data)
        return ErrorContext.model_validate({**cleaned, "message": message})

    def to_application_error(self) -> ApplicationError:
        ctx = self.redacted()
        return ApplicationError(
            ctx.message,
            ctx.model_dump(mode="json"),
            type=ctx.type,
            non_retryable=not ctx.retryable,
            next_retry_delay=timedelta(seconds=ctx.retry_after) if ctx.retry_after else None,
        )

    @classmethod
    def from_failure(cls, err: BaseException, *, step_id: str | None = None) -> ErrorContext:
        """Best ErrorContext for a failure raised to workflow code (activity, child, local)."""
        ctx = _context_from_chain(err)
        if step_id is not None:
            ctx = ctx.model_copy(update={"step_id": step_id})
        return ctx.redacted()


def _context_from_chain(err: BaseException) -> ErrorContext:
    # Walk ActivityError/ChildWorkflowError down to the root cause Temporal recorded.
    seen: BaseException | None = err
    while isinstance(seen, ActivityError | ChildWorkflowError) and seen.cause is not None:
        seen = seen.cause
    if isinstance(seen, ApplicationError):
        for detail in seen.details or ():
            if isinstance(detail, dict) and "type" in detail and "category" in detail:
                try:
                    return ErrorContext.model_validate(detail)
                except Exception:
                    break
        if seen.type and seen.type in ErrorType.__members__:
            return ErrorContext.of(
                ErrorType(seen.type), seen.message, retryable=not seen.non_retryable
            )
        return ErrorContext.of(
            ErrorType.INTERNAL_ERROR,
            f"{seen.type or 'Error'}: {seen.message}",
            retryable=not seen.non_retryable,
        )
    if isinstance(seen, TimeoutError):
        return ErrorContext.of(
            ErrorType.TIMEOUT,
            f"step timed out ({seen.type.name if seen.type else 'timeout'})",
            retryable=True,
            details={"suggestions": ["raise the step's timeout_seconds or retry.max_retries"]},
        )
    if isinstance(seen, CancelledError):
        return ErrorContext.of(ErrorType.CANCELLED, "cancelled", retryable=False)
    if isinstance(seen, FailureError):
        return ErrorContext.of(ErrorType.INTERNAL_ERROR, str(seen) or type(seen).__name__)
    return ErrorContext.of(
        ErrorType.INTERNAL_ERROR, f"{type(seen).__name__}: {seen}", retryable=False
    )


def config_error(message: str, *, env_var: str | None = None, **kwargs: Any) -> ApplicationError:
    suggestions = [f"set {env_var} in the worker's environment"] if env_var else []
    return ErrorContext.of(
        ErrorType.CONFIG_ERROR,
        message,
        retryable=False,
        details={"suggestions": suggestions, **kwargs},
    ).to_application_error()
