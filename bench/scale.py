"""Scale: N concurrent long-running jobs on one worker — memory and completion time.

Each job is two mock LLM calls of `latency` each with a transform between, so a job can't
finish faster than 2 x latency: that is the ideal, and completion times are reported as ratios
to it. The worker is the real one (build_worker: sandboxed interpreter, every activity, the
mirror writing to SQLite in a temp dir) with max_concurrent_activities above N. Memory is this
process's peak RSS (VmHWM, reset before the run) over its RSS just before.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import uuid
from typing import Any

from bench.common import (
    Server,
    child_pids,
    load,
    notes,
    percentile,
    print_table,
    ratio,
    reset_peak_rss,
    rounded,
    vm_kib,
)
from core.contracts import InterpreterInput, JobResult, ResolvedDefinition
from core.db import create_tables, make_engine
from core.settings import Settings
from core.temporal import start_job
from worker.app import build_worker, worker_resources

LLM_STEPS = 2


def definition(latency_ms: int) -> dict[str, Any]:
    def llm(step_id: str, prompt: str) -> dict[str, Any]:
        return {
            "id": step_id,
            "type": "llm",
            "config": {
                "provider": "mock",
                "model": "bench-model",
                "prompt_text": prompt,
                "mock_latency_ms": latency_ms,
            },
        }

    return {
        "name": "bench_scale",
        "version": "1.0.0",
        "steps": [
            llm("think", "Think about ${input.topic}."),
            {
                "id": "question",
                "type": "transform",
                "config": {
                    "operation": "template",
                    "config": {
                        "template": "Answer this: ${thought}",
                        "variables": {"thought": "${steps.think.content}"},
                    },
                },
            },
            llm("answer", "${steps.question.output}"),
        ],
        "output": {"answer": "${steps.answer.content}"},
    }


async def _job(client: Any, settings: Settings, snapshot: ResolvedDefinition, i: int) -> Any:
    t0 = time.perf_counter()
    inp = InterpreterInput(
        job_id=f"bench-scale-{uuid.uuid4().hex}",
        definition=snapshot,
        input_data={"topic": f"topic {i}"},
    )
    handle = await start_job(client, settings, inp)
    result: JobResult = await handle.result()
    return t0, time.perf_counter(), result


async def _sample_rss(peaks: dict[str, int], stop: asyncio.Event) -> None:
    # VmHWM is exact for this process; children (the dev server) only have samples.
    while not stop.is_set():
        peaks["self"] = max(peaks["self"], vm_kib("VmRSS"))
        peaks["children"] = max(peaks["children"], sum(vm_kib("VmRSS", p) for p in child_pids()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


async def _point(
    server: Server, settings: Settings, snapshot: ResolvedDefinition, n: int, ideal_s: float
) -> dict[str, Any]:
    gc.collect()
    rss_before = vm_kib("VmRSS")
    hwm_reset = reset_peak_rss()
    peaks = {"self": rss_before, "children": 0}
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(peaks, stop))
    t0 = time.perf_counter()
    try:
        done = await asyncio.gather(*(_job(server.client, settings, snapshot, i) for i in range(n)))
    finally:
        stop.set()
        await sampler
    makespan = time.perf_counter() - t0
    peak_kib = max(vm_kib("VmHWM") if hwm_reset else 0, peaks["self"])
    job_s = [end - start for start, end, _ in done]
    in_workflow_s = [r.metadata.duration_ms / 1000 for _, _, r in done]
    return {
        "jobs": n,
        "completed": sum(1 for _, _, r in done if r.status == "completed"),
        "makespan_s": rounded(makespan),
        "makespan_over_ideal": rounded(ratio(makespan, ideal_s)),
        "job_p50_over_ideal": rounded(ratio(percentile(job_s, 50), ideal_s)),
        "job_p99_over_ideal": rounded(ratio(percentile(job_s, 99), ideal_s)),
        "in_workflow_p50_over_ideal": rounded(ratio(percentile(in_workflow_s, 50), ideal_s)),
        "rss_before_kib": rss_before,
        "peak_rss_kib": peak_kib,
        "dev_server_peak_rss_kib_sampled": peaks["children"],
        "peak_source": "VmHWM after a clear_refs reset" if hwm_reset else "VmRSS sampled 10/s",
    }


async def run(server: Server, *, quick: bool) -> dict[str, Any]:
    points, latency_ms = ((20,), 500) if quick else ((50, 200), 2000)
    ideal_s = LLM_STEPS * latency_ms / 1000
    settings = server.settings("scale")
    engine = make_engine(settings.database_url)
    create_tables(engine)
    snapshot = load(definition(latency_ms), settings).snapshot()
    warm = load(definition(0), settings).snapshot()
    results: list[dict[str, Any]] = []
    try:
        async with worker_resources(settings, engine=engine) as res:
            worker = build_worker(
                server.client, settings, res, max_concurrent_activities=max(200, 2 * max(points))
            )
            async with worker:
                # Sandbox imports and connections first, so they don't count as per-job memory.
                await asyncio.gather(*(_job(server.client, settings, warm, i) for i in range(5)))
                gc.collect()
                base_kib = vm_kib("VmRSS")
                for n in points:
                    results.append(await _point(server, settings, snapshot, n, ideal_s))
    finally:
        engine.dispose()

    for r in results:
        r["rss_growth_kib_per_job"] = rounded((r["peak_rss_kib"] - base_kib) / r["jobs"], 1)
    slope = None
    if len(results) > 1:
        first, last = results[0], results[-1]
        slope = rounded(
            (last["peak_rss_kib"] - first["peak_rss_kib"]) / (last["jobs"] - first["jobs"]), 1
        )

    def mib(kib: int) -> float | None:
        return rounded(kib / 1024, 1)

    rows: list[list[Any]] = [
        ["jobs completed", *(f"{r['completed']}/{r['jobs']}" for r in results)],
        ["all done after, s", *(r["makespan_s"] for r in results)],
        ["all done / ideal", *(r["makespan_over_ideal"] for r in results)],
        ["job latency p50 / ideal", *(r["job_p50_over_ideal"] for r in results)],
        ["job latency p99 / ideal", *(r["job_p99_over_ideal"] for r in results)],
        ["in-workflow duration p50 / ideal", *(r["in_workflow_p50_over_ideal"] for r in results)],
        ["process peak RSS, MiB", *(mib(r["peak_rss_kib"]) for r in results)],
        ["RSS growth per job, KiB", *(r["rss_growth_kib_per_job"] for r in results)],
        [
            "dev-server peak RSS (sampled), MiB",
            *(mib(r["dev_server_peak_rss_kib_sampled"]) for r in results),
        ],
    ]
    print_table(
        f"scale — N concurrent jobs, each 2 mock llm calls x {latency_ms} ms "
        f"(ideal {ideal_s:.1f} s), one worker, mirror on",
        ["metric", *(f"N={r['jobs']}" for r in results)],
        rows,
    )
    notes(
        f"process RSS after warm-up, before the first N: {mib(base_kib)} MiB; growth per job is "
        "over that; worker and client share this process",
        *([f"peak RSS slope between the two N: {slope} KiB per extra job"] if slope else []),
        f"peak = {results[0]['peak_source']}" if results else "no results",
    )
    return {
        "mock_latency_ms": latency_ms,
        "llm_steps_per_job": LLM_STEPS,
        "ideal_s": ideal_s,
        "rss_after_warmup_kib": base_kib,
        "points": results,
        "peak_rss_slope_kib_per_job": slope,
        "notes": [
            "real worker (build_worker) with max_concurrent_activities >= N; mirror on (SQLite)",
            "RSS is the whole process: worker and the client awaiting N results",
        ],
    }
