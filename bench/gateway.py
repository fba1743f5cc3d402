"""Gateway: POST /api/v1/jobs latency (p50/p99) and sustained jobs/s.

The real gateway (uvicorn + lifespan, SQLite mirror in a temp dir) runs in this process against
the dev server; no worker runs, so only the submit path is measured. The baseline is the same
number of `core.temporal.start_job` calls made directly with the Temporal client, at the same
concurrency, in alternating rounds while the gateway is up (its reconciler loads both sides):
the ratios gateway / direct are what HTTP, validation, the snapshot and the mirror insert add.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import Server, notes, percentile, print_table, ratio, rounded
from core.contracts import InterpreterInput
from core.db import create_tables, make_engine
from core.temporal import start_job
from tests.api_server import gateway
from workflow_defs.catalog import load_catalog
from workflow_defs.inputs import validate_input

WORKFLOW = "quickstart"
INPUT: dict[str, Any] = {"topic": "durable execution"}
BODY: dict[str, Any] = {"workflow_name": WORKFLOW, "input_data": INPUT}


@dataclass
class Load:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0

    def add(self, other: Load) -> None:
        self.latencies_ms += other.latencies_ms
        self.errors += other.errors
        self.wall_s += other.wall_s

    def stats(self) -> dict[str, Any]:
        ms = self.latencies_ms
        return {
            "ok": len(ms),
            "errors": self.errors,
            "wall_s": rounded(self.wall_s, 4),
            "jobs_per_s": rounded(ratio(len(ms), self.wall_s)),
            "p50_ms": rounded(percentile(ms, 50)),
            "p99_ms": rounded(percentile(ms, 99)),
            "max_ms": rounded(max(ms, default=math.nan)),
        }


async def _drive(requests: int, concurrency: int, call: Callable[[], Awaitable[bool]]) -> Load:
    """`requests` calls, `concurrency` at a time; the latency of each successful one."""
    load = Load()
    indices = iter(range(requests))

    async def client() -> None:
        for _ in indices:  # the shared iterator hands each request to one client
            t0 = time.perf_counter()
            ok = await call()
            if ok:
                load.latencies_ms.append((time.perf_counter() - t0) * 1000)
            else:
                load.errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    load.wall_s = time.perf_counter() - t0
    return load


async def run(server: Server, *, quick: bool) -> dict[str, Any]:
    requests, concurrency, rounds, sequential = (40, 10, 1, 10) if quick else (400, 50, 4, 50)
    # The mirror CI and production use (Postgres) when the environment names one.
    url = os.environ.get("TEST_DATABASE_URL")
    settings = server.settings("gateway", **({"database_url": url} if url else {}))
    engine = make_engine(settings.database_url)
    create_tables(engine)
    loaded = load_catalog(settings).definitions.get(WORKFLOW)
    assert loaded is not None, "the shipped quickstart definition is missing"
    snapshot = loaded.snapshot()
    input_data = validate_input(loaded.definition, dict(INPUT))

    async def direct() -> bool:
        inp = InterpreterInput(job_id=str(uuid.uuid4()), definition=snapshot, input_data=input_data)
        await start_job(server.client, settings, inp, memo={"request_hash": "bench"})
        return True

    loads = {"gateway": Load(), "direct": Load()}
    reads = {"gateway": Load(), "direct": Load()}
    unloaded: dict[str, Load] = {}
    finished = [_finished_row(engine) for _ in range(50)]
    started_ids: list[str] = []
    try:
        async with gateway(settings, engine=engine, temporal_client=server.client) as api:

            async def post() -> bool:
                resp = await api.post("/api/v1/jobs", json=BODY)
                if resp.status_code == 202:
                    started_ids.append(resp.json()["job_id"])
                return resp.status_code == 202

            reading = iter(range(10**9))

            async def get_finished() -> bool:
                job_id = finished[next(reading) % len(finished)]
                return (await api.get(f"/api/v1/jobs/{job_id}")).status_code == 200

            async def describe_direct() -> bool:
                job_id = started_ids[next(reading) % len(started_ids)]
                await server.client.get_workflow_handle(job_id).describe()
                return True

            calls = {"gateway": post, "direct": direct}
            for call in calls.values():
                await _drive(10, concurrency, call)  # warm-up
            for name, call in calls.items():
                unloaded[name] = await _drive(sequential, 1, call)
            # Alternating rounds, so drift (the server's growing backlog) favours neither side.
            for r in range(rounds):
                order = list(calls) if r % 2 == 0 else list(calls)[::-1]
                for name in order:
                    loads[name].add(await _drive(requests // rounds, concurrency, calls[name]))
            # GET of a finished job (the mirror row) against a describe of a run in Temporal.
            gets = {"gateway": get_finished, "direct": describe_direct}
            for r in range(rounds):
                order = list(gets) if r % 2 == 0 else list(gets)[::-1]
                for name in order:
                    reads[name].add(await _drive(requests // rounds, concurrency, gets[name]))
    finally:
        engine.dispose()
    get_stats = {name: load.stats() for name, load in reads.items()}
    print_table(
        f"gateway — GET /api/v1/jobs/{{id}} of a finished job, {requests} reads each side at "
        f"concurrency {concurrency}",
        ["metric", "GET /api/v1/jobs/{id}", "describe direct", "ratio gateway/direct"],
        [
            [
                f"latency {k[:3]}, ms",
                get_stats["gateway"][k],
                get_stats["direct"][k],
                rounded(
                    ratio(get_stats["gateway"][k] or math.nan, get_stats["direct"][k] or math.nan)
                ),
            ]
            for k in ("p50_ms", "p99_ms")
        ],
    )

    measured, baseline = loads["gateway"].stats(), loads["direct"].stats()
    seq = {name: rounded(percentile(u.latencies_ms, 50)) for name, u in unloaded.items()}
    keys = ("p50_ms", "p99_ms", "jobs_per_s")
    ratios = {k: rounded(ratio(measured[k] or math.nan, baseline[k] or math.nan)) for k in keys}
    ratios["unloaded_p50_ms"] = rounded(
        ratio(seq["gateway"] or math.nan, seq["direct"] or math.nan)
    )
    labels = {
        "p50_ms": f"latency p50, ms (concurrency {concurrency})",
        "p99_ms": f"latency p99, ms (concurrency {concurrency})",
        "jobs_per_s": "sustained jobs/s",
    }
    rows = [[labels[k], measured[k], baseline[k], ratios[k]] for k in keys]
    rows.insert(
        0,
        [
            "latency p50, ms (one at a time)",
            seq["gateway"],
            seq["direct"],
            ratios["unloaded_p50_ms"],
        ],
    )
    rows.append(["errors", measured["errors"], baseline["errors"], None])
    database = "postgres" if settings.database_url.startswith("postgres") else "sqlite"
    print_table(
        f"gateway — {requests} submits each side at concurrency {concurrency}, {database} mirror "
        f"({rounds} alternating round(s)), quickstart workflow, no worker running",
        ["metric", "POST /api/v1/jobs", "start_job direct", "ratio gateway/direct"],
        rows,
    )
    notes(
        "the load generator (httpx) shares the gateway's process and event loop",
        "the gateway's mirror reconciler runs as in production (every 2 s over queued rows)",
    )
    return {
        "requests_per_side": requests,
        "concurrency": concurrency,
        "rounds": rounds,
        "workflow": WORKFLOW,
        "gateway_post": measured,
        "direct_start_job": baseline,
        "unloaded_p50_ms": seq,
        "ratio_gateway_over_direct": ratios,
        "get_finished": get_stats,
        "database": "postgres" if settings.database_url.startswith("postgres") else "sqlite",
        "notes": [
            "in-process gateway (uvicorn, real lifespan), SQLite mirror in a temp dir, no worker",
            "client and gateway share one process and event loop",
            "direct = core.temporal.start_job with the same snapshot, no HTTP, no mirror row",
        ],
    }


def _finished_row(engine: Any) -> str:
    """A completed job in the mirror, as the interpreter leaves one."""
    from core.db import insert_job
    from core.models import Job, utcnow

    now = utcnow()
    job_id = f"bench-done-{uuid.uuid4()}"
    insert_job(
        engine,
        Job(
            job_id=job_id,
            workflow_name=WORKFLOW,
            workflow_version="1.0.0",
            status="completed",
            owner="anonymous",
            output={"title": "T", "points": ["a", "b", "c"], "summary": "s"},
            job_metadata={"duration_ms": 40, "total_tokens": 120, "steps": []},
            created_at=now,
            started_at=now,
            completed_at=now,
            updated_at=now,
        ),
    )
    return job_id
