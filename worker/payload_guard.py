"""Worker interceptor: no activity result larger than a step may ever keep reaches Temporal.

An oversized result would be rejected when the worker completes the activity, and the step
would fail with an opaque payload error (or be retried into the same wall). Failing it here,
non-retryable and named PAYLOAD_TOO_LARGE, keeps the answer out of history and tells the user
which limit to respect. The interpreter applies each step's own, smaller limit on top.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from core.errors import ErrorContext, ErrorType
from core.payload_limits import STEP_OUTPUT_CEILING, describe, json_size


class PayloadGuard(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _GuardedActivity(next)


class _GuardedActivity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await super().execute_activity(input)
        size = json_size(result)
        if size > STEP_OUTPUT_CEILING:
            info = activity.info()
            raise ErrorContext.of(
                ErrorType.PAYLOAD_TOO_LARGE,
                f"the step's output ({info.activity_type}) is {describe(size)}, over the "
                f"{describe(STEP_OUTPUT_CEILING)} limit of any step",
                retryable=False,
                attempt=info.attempt,
                details={"suggestions": ["cap the upstream answer or request fewer fields"]},
            ).to_application_error()
        return result
