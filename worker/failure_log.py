"""An expected step failure is one log line, not a traceback.

The SDK logs every failed activity attempt at WARNING with the exception's traceback. An
ApplicationError is how our activities report what went wrong on purpose (an upstream answered
503, a key is missing, a reply broke its schema): the traceback says nothing the message
doesn't, and a retried step would print one per attempt. Those become one line naming the job,
the step, the attempt, the error type and message. Any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from core.redaction import redact_text

STEP_ATTRIBUTE = "_llmflow_step"


class StepOfFailure(Interceptor):
    """Marks an activity's ApplicationError with the step it ran for, for the log line."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Marking(next)


class _Marking(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await self.next.execute_activity(input)
        except ApplicationError as err:
            step = getattr(input.args[0], "step_id", None) if input.args else None
            if step is not None:
                setattr(err, STEP_ATTRIBUTE, step)
            raise


class OneLineStepFailures(logging.Filter):
    """On the `temporalio.activity` logger: rewrites the SDK's "Completing activity as failed"
    record for an ApplicationError into one line. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        if not isinstance(err, ApplicationError):
            return True
        if getattr(record, "__temporal_error_identifier", None) != "ActivityFailure":
            return True
        info = getattr(record, "temporal_activity", None) or {}
        step = getattr(err, STEP_ATTRIBUTE, None) or info.get("activity_type", "?")
        outcome = "final" if err.non_retryable else "retryable"
        line = (
            f"step {step} of job {info.get('workflow_id', '?')} failed "
            f"(attempt {info.get('attempt', '?')}, {outcome}): {err.type}: {err.message}"
        )
        record.msg, record.args = redact_text(line, truncate=False), None
        record.exc_info, record.exc_text = None, None
        return True


def install_one_line_failures() -> None:
    logger = logging.getLogger("temporalio.activity")
    if not any(isinstance(f, OneLineStepFailures) for f in logger.filters):
        logger.addFilter(OneLineStepFailures())
