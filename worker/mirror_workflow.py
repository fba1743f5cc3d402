"""A detached retry of a job's final mirror write, for when the database is down at the end.

The interpreter gives its own mirror write a bounded budget, then starts this workflow
(ParentClosePolicy.ABANDON) and completes: the job is done in Temporal, and the row appears
as soon as the database accepts the write.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from core.contracts import MirrorUpdate

RETRY_UNTIL_BACK = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
)


@workflow.defn(name="MirrorWorkflow")
class MirrorWorkflow:
    @workflow.run
    async def run(self, update: MirrorUpdate) -> str:
        return await workflow.execute_activity(
            "mirror_job",
            update,
            result_type=str,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY_UNTIL_BACK,
            summary=f"mirror: {update.status}",
        )
