"""The baseline: the benchmark's three-call workflow written by hand as a Temporal workflow.

It does what bench/interpreter_vs_handwritten.py's definition does — the same `llm_call`
activity three times with the same inputs and activity options, and the same two transforms as
plain Python — so the difference measured is the interpreter's own cost. Loaded into the
workflow sandbox like the interpreter: only passed-through model imports.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.llm.models import LlmCallInput
    from core.step_outputs import LlmCallOutput

HANDWRITTEN_WORKFLOW = "BenchHandwrittenWorkflow"
MODEL = "bench-model"

# What the interpreter uses for an llm step without `retry`/`timeout_seconds` (step_inputs.py).
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=60),
    backoff_coefficient=2.0,
    maximum_attempts=4,
)
WORKFLOW_TIMEOUT = timedelta(seconds=600)


@workflow.defn(name=HANDWRITTEN_WORKFLOW)
class HandwrittenWorkflow:
    @workflow.run
    async def run(self, inp: dict[str, Any]) -> dict[str, Any]:
        self._job_id = inp["job_id"]
        self._provider = inp.get("provider", "mock")
        self._deadline = workflow.now() + WORKFLOW_TIMEOUT
        topic = inp["topic"]
        outline = await self._llm("outline", f"Outline a short article about {topic}.")
        draft_prompt = f"Draft: {outline.content}"
        draft = await self._llm("draft", f"Write the article from this outline. {draft_prompt}")
        combined = "\n".join([outline.content, draft.content])
        review = await self._llm("review", f"Review this article: {combined}")
        return {"final": review.content}

    async def _llm(self, step_id: str, prompt: str) -> LlmCallOutput:
        remaining = self._deadline - workflow.now()
        return await workflow.execute_activity(
            "llm_call",
            LlmCallInput(
                step_id=step_id,
                job_id=self._job_id,
                provider=self._provider,
                model=MODEL,
                prompt=prompt,
                request_timeout_seconds=120,
                mock_latency_ms=0,
            ),
            result_type=LlmCallOutput,
            start_to_close_timeout=timedelta(seconds=120),
            schedule_to_close_timeout=remaining,
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
            summary=f"{step_id}: llm",
        )
