"""Waiting jobs are cheap: N jobs that each sit in a 10-minute durable `wait` on one worker.

Every job is started, runs its first step, and parks in a timer; the worker keeps (up to its
sticky-cache size) each run in memory. Reported: the worker process's RSS before and once all
N wait, the growth per waiting job, and how long it took until every job was waiting. The jobs
are terminated afterwards. The worker and the submitting client share this process, so the
growth includes the client's handles (small) — an upper bound for the worker's own.
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from typing import Any

from bench.common import Server, load, notes, print_table, rounded, vm_kib
from core.contracts import InterpreterInput, Progress, RunOptions
from core.temporal import start_job
from worker.app import build_worker, worker_resources

DEFINITION: dict[str, Any] = {
    "name": "bench_waiting",
    "version": "1.0.0",
    "steps": [
        {
            "id": "hello",
            "type": "llm",
            "config": {
                "provider": "mock",
                "model": "m",
                "prompt_text": "hello",
                "mock_latency_ms": 0,
            },
        },
        {"id": "pause", "type": "wait", "config": {"seconds": 600}},
    ],
    "timeout_seconds": 900,
}
RSS_BUDGET_MIB = 500


async def run(server: Server, *, quick: bool) -> dict[str, Any]:
    n = 100 if quick else 1000
    settings = server.settings("waiting")
    snapshot = load(DEFINITION, settings).snapshot()
    handles: list[Any] = []
    async with worker_resources(settings) as res:
        async with build_worker(server.client, settings, res):
            gc.collect()
            before_kib = vm_kib("VmRSS")
            started = time.perf_counter()
            for chunk in range(0, n, 100):
                handles += await asyncio.gather(
                    *(
                        start_job(
                            server.client,
                            settings,
                            InterpreterInput(
                                job_id=f"bench-wait-{uuid.uuid4().hex}",
                                definition=snapshot,
                                options=RunOptions(mirror=False),
                            ),
                        )
                        for _ in range(chunk, min(n, chunk + 100))
                    )
                )
            waiting = 0
            while waiting < n and time.perf_counter() - started < 300:
                await asyncio.sleep(1)
                states = await asyncio.gather(
                    *(h.query("progress", result_type=Progress) for h in handles[-20:])
                )
                waiting = n if all(s.steps.get("pause") == "running" for s in states) else 0
            parked_s = time.perf_counter() - started
            gc.collect()
            after_kib = vm_kib("VmRSS")
            await asyncio.gather(*(h.terminate("bench over") for h in handles))
    growth_kib = (after_kib - before_kib) / n
    total_mib = after_kib / 1024
    print_table(
        f"waiting jobs — {n} jobs parked in a 10-minute durable wait, one worker",
        ["metric", "value"],
        [
            ["worker RSS before, MiB", rounded(before_kib / 1024, 1)],
            ["worker RSS with all waiting, MiB", rounded(total_mib, 1)],
            ["RSS growth per waiting job, KiB", rounded(growth_kib, 1)],
            [f"under {RSS_BUDGET_MIB} MiB", total_mib < RSS_BUDGET_MIB],
            ["seconds until all were waiting", rounded(parked_s, 1)],
        ],
    )
    notes("the last 20 jobs' progress is read to know all are parked (started in order)")
    return {
        "jobs": n,
        "rss_before_mib": rounded(before_kib / 1024, 1),
        "rss_waiting_mib": rounded(total_mib, 1),
        "rss_growth_per_job_kib": rounded(growth_kib, 1),
        "under_budget": total_mib < RSS_BUDGET_MIB,
        "seconds_until_waiting": rounded(parked_s, 1),
    }
