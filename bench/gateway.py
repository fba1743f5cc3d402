"""Gateway: POST /api/v1/jobs latency (p50/p99) and sustained jobs/s (DESIGN §11).

The real gateway (uvicorn + lifespan, SQLite mirror in a temp dir) runs in this process against
the dev server; no worker runs, so only the submit path is measured. The baseline is the same
number of `start_job` calls made directly with the Temporal client at the same concurrency:
the ratios gateway ÷ direct are what the HTTP layer, validation and the mirror insert add.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench.common import Server, notes, percentile, print_table, ratio, rounded
from core.contracts import InterpreterInput
from core.db import create_tables, make_engine
from core.temporal import start_job
from tests.api_server import gateway
from workflow_defs.catalog import load_catalog
from workflow_defs.inputs import validate_input

BODY = {"workflow_name": "quickstart", "input_data": {"topic": "durable execution"}}


async def _drive(
    requests: int, concurrency: int, call: Callable[[], Awaitable[bool]]
) -> dict[str, Any]:
    """`requests` calls, `concurrency` at a time; latency of each successful one."""
    latencies: list[float] = []
    errors = 0
    remaining = iter(range(requests))

    async def client() -> None:
        nonlocal errors
        for _ in remaining:  # the shared iterator hands each index to one client
            t0 = time.perf_counter()
            ok = await call()
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    ms = [x * 1000 for x in latencies]
    return {
        "requests": requests,
        "errors": errors,
        "wall_s": rounded(wall, 4),
        "jobs_per_s": rounded(len(latencies) / wall),
        "p50_ms": rounded(percentile(ms, 50)),
        "p99_ms": rounded(percentile(ms, 99)),
        "max_ms": rounded(max(ms, default=float("nan"))),
    }


async def run(server: Server, *, quick: bool) -> dict[str, Any]:
    requests, concurrency, warmup = (40, 10, 5) if quick else (200, 10, 20)
    settings = server.settings("gateway")
    engine = make_engine(settings.database_url)
    create_tables(engine)
    loaded = load_catalog(settings).definitions.get(BODY["workflow_name"])
    assert loaded is not None, "the shipped quickstart definition is missing"
    snapshot = loaded.snapshot()
    input_data = validate_input(loaded.definition, dict(BODY["input_data"]))  # type: ignore[arg-type]

    async def direct() -> bool:
        inp = InterpreterInput(job_id=str(uuid.uuid4()), definition=snapshot, input_data=input_data)
        await start_job(server.client, settings, inp, memo={"request_hash": "bench"})
        return True

    try:
        await _drive(warmup, concurrency, direct)
        baseline = await _drive(requests, concurrency, direct)
        async with gateway(settings, engine=engine, temporal_client=server.client) as api:

            async def post() -> bool:
                resp = await api.post("/api/v1/jobs", json=BODY)
                return resp.status_code == 202

            await _drive(warmup, concurrency, post)
            measured = await _drive(requests, concurrency, post)
    finally:
        engine.dispose()

    keys = ("p50_ms", "p99_ms", "jobs_per_s")
    ratios = {k: rounded(ratio(measured[k] or 0.0, baseline[k] or 0.0)) for k in keys}
    labels = {"p50_ms": "latency p50, ms", "p99_ms": "latency p99, ms", "jobs_per_s": "jobs/s"}
    print_table(
        f"gateway — {requests} submits, concurrency {concurrency} (no worker running)",
        ["metric", "POST /api/v1/jobs", "start_job direct", "ratio gateway/direct"],
        [[labels[k], measured[k], baseline[k], ratios[k]] for k in keys]
        + [["errors", measured["errors"], baseline["errors"], None]],
    )
    notes(
        "the load generator (httpx) shares the gateway's process and event loop",
        "the gateway's mirror reconciler runs as in production (every 2 s over queued rows)",
    )
    return {
        "requests": requests,
        "concurrency": concurrency,
        "workflow": BODY["workflow_name"],
        "gateway_post": measured,
        "direct_start_job": baseline,
        "ratio_gateway_over_direct": ratios,
        "notes": [
            "in-process gateway (uvicorn, real lifespan), SQLite mirror in a temp dir, no worker",
            "client and gateway share one process and event loop",
        ],
    }
