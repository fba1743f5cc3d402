"""Interpreter vs a hand-written Temporal workflow doing the same work.

Both run on one worker (same task queue, same settings, same sandbox runner, the real
`llm_call` activity with the mock provider at 0 ms), in alternating rounds of N concurrently
submitted jobs: 3 llm calls + 2 pure transforms each. Reported per variant: jobs/s, process CPU
per step (worker and client share this process, so the client's share is in both numbers) and
dev-server CPU per step; the ratios interpreter / hand-written are the result.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.http_errors import new_http_client
from activities.llm.activity import LlmActivities
from bench.common import CpuMeter, Server, load, median, notes, print_table, ratio, rounded
from bench.handwritten_workflow import HANDWRITTEN_WORKFLOW, MODEL, HandwrittenWorkflow
from core.contracts import InterpreterInput, JobResult, ResolvedDefinition, RunOptions
from core.settings import Settings
from core.temporal import start_job
from worker.app import sandbox_runner
from worker.interpreter import InterpreterWorkflow

STEPS_PER_JOB = 5


def _llm(step_id: str, prompt: str) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "llm",
        "config": {"provider": "mock", "model": MODEL, "prompt_text": prompt, "mock_latency_ms": 0},
    }


# The same work as bench/handwritten_workflow.py, written in the DSL.
DEFINITION: dict[str, Any] = {
    "name": "bench_three_calls",
    "version": "1.0.0",
    "steps": [
        _llm("outline", "Outline a short article about ${input.topic}."),
        {
            "id": "draft_prompt",
            "type": "transform",
            "config": {
                "operation": "template",
                "config": {
                    "template": "Draft: ${outline}",
                    "variables": {"outline": "${steps.outline.content}"},
                },
            },
        },
        _llm("draft", "Write the article from this outline. ${steps.draft_prompt.output}"),
        {
            "id": "combined",
            "type": "transform",
            "config": {
                "operation": "join",
                "input": ["${steps.outline.content}", "${steps.draft.content}"],
                "config": {"separator": "\n"},
            },
        },
        _llm("review", "Review this article: ${steps.combined.output}"),
    ],
    "output": {"final": "${steps.review.content}"},
}


async def _one(
    variant: str, client: Client, settings: Settings, snapshot: ResolvedDefinition, topic: str
) -> dict[str, Any]:
    job_id = f"bench-{variant}-{uuid.uuid4().hex}"
    if variant == "interpreter":
        inp = InterpreterInput(
            job_id=job_id,
            definition=snapshot,
            input_data={"topic": topic},
            options=RunOptions(mirror=False),  # the hand-written one keeps no mirror either
        )
        handle = await start_job(client, settings, inp)
        result: JobResult = await handle.result()
        if result.status != "completed":
            raise RuntimeError(f"interpreter job {job_id} ended {result.status}: {result.error}")
        return result.output
    out: dict[str, Any] = await client.execute_workflow(
        HANDWRITTEN_WORKFLOW,
        {"job_id": job_id, "topic": topic},
        id=job_id,
        task_queue=settings.temporal_task_queue,
        result_type=dict,
    )
    return out


async def _batch(
    variant: str, n: int, client: Client, settings: Settings, snapshot: ResolvedDefinition
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with CpuMeter() as meter:
        outputs = await asyncio.gather(
            *(_one(variant, client, settings, snapshot, f"topic {i}") for i in range(n))
        )
    steps = n * STEPS_PER_JOB
    return {
        "jobs": n,
        "wall_s": rounded(meter.wall, 4),
        "jobs_per_s": rounded(n / meter.wall),
        "cpu_ms_per_step": rounded(meter.cpu * 1000 / steps),
        "server_cpu_ms_per_step": rounded(meter.server_cpu * 1000 / steps),
    }, outputs


async def run(server: Server, *, quick: bool) -> dict[str, Any]:
    jobs, rounds, warmup = (10, 1, 3) if quick else (50, 7, 10)
    settings = server.settings("interp")
    snapshot = load(DEFINITION, settings).snapshot()
    http = new_http_client()
    llm = LlmActivities(settings, http)
    variants = ("interpreter", "handwritten")
    per_round: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    same_output = True
    try:
        async with Worker(
            server.client,
            task_queue=settings.temporal_task_queue,
            workflows=[InterpreterWorkflow, HandwrittenWorkflow],
            activities=[llm.llm_call],
            workflow_runner=sandbox_runner(),
        ):
            for variant in variants:  # sandbox imports, connection set-up, code paths warmed
                await _batch(variant, warmup, server.client, settings, snapshot)
            for r in range(rounds):
                # Alternate who goes first, so drift within a round favours neither.
                order = variants if r % 2 == 0 else variants[::-1]
                outputs: dict[str, list[dict[str, Any]]] = {}
                for variant in order:
                    stats, outputs[variant] = await _batch(
                        variant, jobs, server.client, settings, snapshot
                    )
                    per_round[variant].append(stats)
                same_output &= outputs["interpreter"] == outputs["handwritten"]
    finally:
        await http.aclose()

    def med(variant: str, key: str) -> float:
        return median([s[key] for s in per_round[variant] if s[key] is not None])

    metrics = ("jobs_per_s", "cpu_ms_per_step", "server_cpu_ms_per_step")

    def round_ratios(key: str) -> list[float]:
        pairs = zip(per_round["interpreter"], per_round["handwritten"], strict=True)
        return [ratio(i[key] or math.nan, h[key] or math.nan) for i, h in pairs]

    summary: dict[str, dict[str, Any]] = {
        m: {
            "interpreter": rounded(med("interpreter", m)),
            "handwritten": rounded(med("handwritten", m)),
            "ratio": rounded(ratio(med("interpreter", m), med("handwritten", m))),
            "ratio_per_round": [rounded(x) for x in round_ratios(m)],
        }
        for m in metrics
    }

    def spread(values: list[float | None]) -> str:
        known = [v for v in values if v is not None]
        return f"{min(known):.2f}..{max(known):.2f}" if known else "n/a"

    labels = {
        "jobs_per_s": "throughput, jobs/s",
        "cpu_ms_per_step": "process CPU per step, ms",
        "server_cpu_ms_per_step": "dev-server CPU per step, ms",
    }
    print_table(
        f"interpreter vs hand-written workflow — {jobs} concurrent jobs x {STEPS_PER_JOB} steps "
        f"(3 mock llm_call + 2 transforms), median of {rounds} round(s)",
        ["metric", "interpreter", "hand-written", "ratio interp/hand", "per-round ratios"],
        [
            [
                labels[m],
                s["interpreter"],
                s["handwritten"],
                s["ratio"],
                spread(s["ratio_per_round"]),
            ]
            for m, s in summary.items()
        ],
    )
    notes(
        "process CPU = worker + submitting client (same process): the client's share is in "
        "both columns, so the ratio understates the interpreter's own overhead",
        f"outputs identical between variants: {same_output}",
    )
    return {
        "jobs_per_round": jobs,
        "rounds": rounds,
        "warmup_jobs": warmup,
        "steps_per_job": STEPS_PER_JOB,
        "summary": summary,
        "rounds_detail": per_round,
        "outputs_identical": same_output,
        "notes": [
            "same worker for both variants (one task queue, default worker options, sandboxed)",
            "process CPU includes the client submitting and awaiting the jobs",
            "interpreter runs with options.mirror=False; started with start_job (search "
            "attributes + summary), the hand-written workflow with a plain start",
        ],
    }
