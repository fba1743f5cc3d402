"""Gateway: `POST /api/v1/jobs` and `GET /api/v1/jobs/{id}` of a finished job, at 50 clients,
each against a direct-to-Temporal baseline in the same run.

The gateway runs as deployed, in its own process (`llmflow api`: uvicorn with its own options,
the lifespan with the reconciler), on a scratch mirror database (Postgres when
TEST_DATABASE_URL is set, else SQLite) against the dev server; no worker runs, so only the
gateway's own paths are measured. The load generator is this process: a small keep-alive HTTP
client (bench/http_client.py) for the gateway, the Temporal client for the baselines
(`core.temporal.start_job` with the same snapshot; `describe` of a run). Sides alternate,
round by round, so drift favours neither.

Two loads per request kind:
- paced: 50 clients, each sending one request every `50 / rate` seconds (a random phase each),
  i.e. `rate` requests a second in all, below what either side can serve. This is the latency
  a client sees: the goal figures (POST p99 < 25 ms, GET p99 < 15 ms) are read here.
- saturated: 50 clients each sending its next request as soon as the last one is answered.
  Latency there is only concurrency / throughput (Little's law), so what it shows is the
  sustained rate (requests/s) of each side.

CPU per request of the gateway process and of the dev server is read from /proc.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import Server, notes, percentile, print_table, ratio, rounded
from bench.http_client import HttpClient
from bench.procs import Proc, gateway_process, scratch_database
from core.contracts import InterpreterInput
from core.db import create_tables, insert_job, make_engine
from core.models import Job, utcnow
from core.temporal import start_job
from workflow_defs.catalog import load_catalog
from workflow_defs.inputs import validate_input

WORKFLOW = "quickstart"
INPUT: dict[str, Any] = {"topic": "durable execution"}
BODY: dict[str, Any] = {"workflow_name": WORKFLOW, "input_data": INPUT}
CLIENTS = 50


@dataclass
class Load:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0
    gateway_cpu_s: float = 0.0
    server_cpu_s: float = 0.0

    def add(self, other: Load) -> None:
        self.latencies_ms += other.latencies_ms
        self.errors += other.errors
        self.wall_s += other.wall_s
        self.gateway_cpu_s += other.gateway_cpu_s
        self.server_cpu_s += other.server_cpu_s

    def stats(self) -> dict[str, Any]:
        ms = self.latencies_ms
        n = len(ms) + self.errors
        return {
            "ok": len(ms),
            "errors": self.errors,
            "wall_s": rounded(self.wall_s, 4),
            "per_s": rounded(ratio(len(ms), self.wall_s)),
            "p50_ms": rounded(percentile(ms, 50)),
            "p99_ms": rounded(percentile(ms, 99)),
            "max_ms": rounded(max(ms, default=math.nan)),
            "gateway_cpu_ms_per_request": rounded(1000 * ratio(self.gateway_cpu_s, n)),
            "server_cpu_ms_per_request": rounded(1000 * ratio(self.server_cpu_s, n)),
        }


Call = Callable[[], Awaitable[bool]]


async def _drive(
    requests: int,
    call: Call,
    *,
    server: Server,
    gateway: Proc,
    rate: float | None = None,
    clients: int = CLIENTS,
) -> Load:
    """`requests` calls from `clients` clients: back to back (rate None), or each client once
    every `clients / rate` seconds."""
    load = Load()
    indices = iter(range(requests))
    gap = clients / rate if rate else 0.0

    async def client() -> None:
        due = time.perf_counter() + random.uniform(0, gap)
        for _ in indices:  # the shared iterator hands each request to one client
            if gap:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                due += gap
            t0 = time.perf_counter()
            ok = await call()
            if ok:
                load.latencies_ms.append((time.perf_counter() - t0) * 1000)
            else:
                load.errors += 1

    cpu0, srv0 = gateway.cpu(), server.cpu_seconds()
    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    load.wall_s = time.perf_counter() - t0
    load.gateway_cpu_s = gateway.cpu() - cpu0
    load.server_cpu_s = server.cpu_seconds() - srv0
    return load


async def run(server: Server, *, quick: bool) -> dict[str, Any]:
    requests, rounds, post_rate, get_rate = (
        (100, 1, 20.0, 100.0) if quick else (400, 4, 20.0, 100.0)
    )
    async with scratch_database(os.environ.get("TEST_DATABASE_URL"), server.tmp, "gateway") as url:
        settings = server.settings("gateway", database_url=url)
        engine = make_engine(settings.database_url)
        try:
            create_tables(engine)
            finished = [_finished_row(engine) for _ in range(requests)]
            async with gateway_process(settings, server.tmp / "gateway") as (base_url, proc):
                return await _measure(
                    server,
                    settings,
                    proc,
                    base_url,
                    finished,
                    requests,
                    rounds,
                    post_rate,
                    get_rate,
                )
        finally:
            engine.dispose()


async def _measure(
    server: Server,
    settings: Any,
    proc: Proc,
    base_url: str,
    finished: list[str],
    requests: int,
    rounds: int,
    post_rate: float,
    get_rate: float,
) -> dict[str, Any]:
    loaded = load_catalog(settings).definitions.get(WORKFLOW)
    assert loaded is not None, "the shipped quickstart definition is missing"
    snapshot = loaded.snapshot()
    input_data = validate_input(loaded.definition, dict(INPUT))
    started_ids: list[str] = []

    async def direct() -> bool:
        job_id = str(uuid.uuid4())
        inp = InterpreterInput(job_id=job_id, definition=snapshot, input_data=input_data)
        await start_job(server.client, settings, inp, memo={"request_hash": "bench"})
        started_ids.append(job_id)
        return True

    async with HttpClient(base_url, timeout=60) as api:

        async def post() -> bool:
            resp = await api.post("/api/v1/jobs", json=BODY)
            return resp.status_code == 202

        reading = iter(range(10**9))

        async def get_finished() -> bool:
            # Each read a different finished job: the mirror row is read, not a cached answer.
            job_id = finished[next(reading) % len(finished)]
            return (await api.get(f"/api/v1/jobs/{job_id}")).status_code == 200

        async def describe_direct() -> bool:
            job_id = started_ids[next(reading) % len(started_ids)]
            await server.client.get_workflow_handle(job_id).describe()
            return True

        def drive(n: int, call: Call, rate: float | None, clients: int = CLIENTS) -> Any:
            return _drive(n, call, server=server, gateway=proc, rate=rate, clients=clients)

        # Reads first: the submits leave queued jobs (no worker runs them) whose rows the
        # gateway's reconciler then visits in the background.
        kinds = {
            "get": ({"gateway": get_finished, "direct": describe_direct}, get_rate),
            "post": ({"gateway": post, "direct": direct}, post_rate),
        }
        await drive(CLIENTS, direct, None)  # runs for the describes to read
        results: dict[str, dict[str, dict[str, Load]]] = {}
        for kind, (calls, rate) in kinds.items():
            for call in calls.values():
                await drive(min(requests, 2 * CLIENTS), call, None)  # warm-up (connections)
            per = results[kind] = {
                load: {side: Load() for side in calls} for load in ("one", "paced", "saturated")
            }
            for side, call in calls.items():
                per["one"][side] = await drive(min(requests, CLIENTS), call, None, clients=1)
            for r in range(rounds):
                for side in list(calls) if r % 2 == 0 else list(calls)[::-1]:
                    per["paced"][side].add(await drive(requests // rounds, calls[side], rate))
                    per["saturated"][side].add(await drive(requests // rounds, calls[side], None))

    stats = {
        kind: {load: {side: v.stats() for side, v in sides.items()} for load, sides in per.items()}
        for kind, per in results.items()
    }
    database = "postgres" if settings.database_url.startswith("postgres") else "sqlite"
    rates = {"post": post_rate, "get": get_rate}
    titles = {
        "post": ("POST /api/v1/jobs", "start_job direct"),
        "get": ("GET /api/v1/jobs/{id} (finished)", "describe direct"),
    }
    for kind, kind_stats in stats.items():
        rows: list[list[Any]] = []

        def row(
            label: str,
            load: str,
            key: str,
            per: dict[str, Any] = kind_stats,
            rows: list[list[Any]] = rows,
        ) -> None:
            g, d = per[load]["gateway"][key], per[load]["direct"][key]
            rows.append(
                [label, g, d, rounded(ratio(g if g is not None else math.nan, d or math.nan))]
            )

        row("latency p50, ms (one client)", "one", "p50_ms")
        row(f"latency p50, ms ({CLIENTS} clients paced)", "paced", "p50_ms")
        row(f"latency p99, ms ({CLIENTS} clients paced)", "paced", "p99_ms")
        row(f"latency p99, ms ({CLIENTS} clients saturated)", "saturated", "p99_ms")
        row("requests/s (saturated)", "saturated", "per_s")
        row("gateway CPU ms per request (saturated)", "saturated", "gateway_cpu_ms_per_request")
        row("dev-server CPU ms per request (saturated)", "saturated", "server_cpu_ms_per_request")
        errors = {
            side: sum(kind_stats[load][side]["errors"] for load in kind_stats)
            for side in ("gateway", "direct")
        }
        rows.append(["errors", errors["gateway"], errors["direct"], None])
        gateway_label, direct_label = titles[kind]
        print_table(
            f"gateway — {gateway_label}: {CLIENTS} clients, paced at {rates[kind]:.0f}/s in all, "
            f"then saturated; {requests} requests per side per load ({rounds} alternating "
            f"round(s)), {database} mirror, quickstart, no worker",
            ["metric", gateway_label, direct_label, "ratio gateway/direct"],
            rows,
        )
    notes(
        "gateway = `llmflow api` in its own process; load generator (small HTTP client for the "
        "gateway, Temporal client for the baselines) in this one",
        "gateway CPU on the direct side is its idle background (reconciler, polled-row refresh)",
        "POST does per request what start_job direct does not: HTTP + auth, body and input "
        "validation, snapshot, job row insert; GET reads the mirror row (no Temporal call)",
    )
    return {
        "requests_per_side": requests,
        "clients": CLIENTS,
        "rounds": rounds,
        "paced_rate_per_s": rates,
        "workflow": WORKFLOW,
        "database": database,
        "post": stats["post"],
        "get_finished": stats["get"],
    }


def _finished_row(engine: Any) -> str:
    """A completed job in the mirror, as the interpreter leaves one."""
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
