"""A detached retry of a job's final mirror write, for when the database is down at the end.

The interpreter gives its own mirror write a bounded budget, then starts this workflow
(ParentClosePolicy.ABANDON) and completes: the job is done in Temporal, and the row appears
as soon as the database accepts the write.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from worker.job_effects import MIRROR_RETRY

with workflow.unsafe.imports_passed_through():
    from core.contracts import MIRROR_JOB, MirrorUpdate


@workflow.defn(name="MirrorWorkflow")
class MirrorWorkflow:
    @workflow.run
    async def run(self, update: MirrorUpdate) -> str:
        return await workflow.execute_activity(
            MIRROR_JOB,
            update,
            result_type=str,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=MIRROR_RETRY,
            summary=f"mirror: {update.status}",
        )
