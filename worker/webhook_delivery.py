"""A job callback (completion, or a debug_mode step event) as its own workflow.

The interpreter starts it as a child with ParentClosePolicy.ABANDON, so a slow or failing
receiver never keeps the job open, and every retry is visible in the Web UI. Every non-2xx
answer is retried with backoff (Retry-After honoured by the activity's errors) for up to 24 h;
when the receiver answers 410 Gone or time runs out, an ERROR alert is raised. Once the job's
completion delivery has ended either way, the job's own stored secret (if any) is deleted.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.job_secret_models import ForgetJobSecretInput
    from activities.webhook_step_models import WebhookSendInput
    from core.contracts import (
        DELIVER_JOB_WEBHOOK,
        FORGET_JOB_SECRET,
        RAISE_ALERT,
        AlertInput,
        WebhookDeliveryInput,
        WebhookDeliveryResult,
    )
    from core.errors import ErrorContext
    from core.step_outputs import WebhookSendOutput

DELIVERY_WINDOW = timedelta(hours=24)
DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=0,  # bounded by DELIVERY_WINDOW instead
)
# The deliveries after which a job's own secret has no further use. Debug-mode step events share
# the secret_ref but come earlier, while the completion delivery still needs the secret.
FINAL_EVENTS = ("workflow.completed", "workflow.failed")


@workflow.defn(name="WebhookDeliveryWorkflow")
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, inp: WebhookDeliveryInput) -> WebhookDeliveryResult:
        result = await self._deliver(inp)
        await self._forget_secret(inp)
        return result

    async def _deliver(self, inp: WebhookDeliveryInput) -> WebhookDeliveryResult:
        send = WebhookSendInput(
            job_id=inp.job_id,
            url=inp.url,
            payload=inp.payload,
            event=inp.event,
            delivery_id=inp.delivery_id,
            secret_ref=inp.secret_ref,
        )
        try:
            out = await workflow.execute_activity(
                DELIVER_JOB_WEBHOOK,
                send,
                result_type=WebhookSendOutput,
                start_to_close_timeout=timedelta(seconds=40),
                schedule_to_close_timeout=DELIVERY_WINDOW,
                retry_policy=DELIVERY_RETRY,
                summary=f"deliver {inp.event}",
            )
        except ActivityError as exc:
            error = ErrorContext.from_failure(exc)
            await workflow.execute_activity(
                RAISE_ALERT,
                AlertInput(
                    level="ERROR",
                    source="webhook",
                    message=f"webhook delivery for job {inp.job_id} gave up: {error.message}",
                    job_id=inp.job_id,
                    details={
                        "delivery_id": inp.delivery_id,
                        "error": error.model_dump(mode="json"),
                    },
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(
                    maximum_interval=timedelta(seconds=30), maximum_attempts=0
                ),
                summary="alert: webhook exhausted",
            )
            return WebhookDeliveryResult(
                delivered=False,
                status_code=error.details.status_code,
                attempts=error.attempt or 0,
                error=error.model_dump(mode="json"),
            )
        return WebhookDeliveryResult(
            delivered=True, status_code=out.status_code, attempts=out.attempt
        )

    async def _forget_secret(self, inp: WebhookDeliveryInput) -> None:
        if inp.secret_ref != f"job:{inp.job_id}" or inp.event not in FINAL_EVENTS:
            return
        # Runs recorded before this step existed end without it.
        if not workflow.patched("forget-job-secret"):
            return
        try:
            await workflow.execute_activity(
                FORGET_JOB_SECRET,
                ForgetJobSecretInput(job_id=inp.job_id),
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(hours=1),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=0),
                summary="forget the job's webhook secret",
            )
        except ActivityError:
            # The delivery's outcome stands; only the row outlives it.
            workflow.logger.warning("job %s: stored webhook secret not deleted", inp.job_id)
