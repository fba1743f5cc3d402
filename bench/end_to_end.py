"""End to end: the whole product path against a hand-written workflow making the same calls.

Every part runs in its own process, as deployed: the dev server, the gateway (`llmflow api`),
the product worker (`llmflow worker`), the hand-written baseline's worker
(`bench.handwritten_worker`), and this process, which is the load generator (and the fake LLM).

Product side, as a user runs it: N jobs of a three-`llm`-step definition submitted at once
through `POST /api/v1/jobs`, each then polled with `GET /api/v1/jobs/{id}` every 0.5 s until it
ends; the mirror on a scratch database (Postgres when TEST_DATABASE_URL is set, else SQLite),
Redis when TEST_REDIS_URL is set, search attributes, one worker. The LLM provider is the OpenAI
wire format pointed at a local fake that answers at once.

Hand-written side: a workflow that calls the same `llm_call` activity three times with the same
provider and fake, started directly on the same dev server with a plain start (no mirror, no
search attributes, no gateway), N at once, results awaited (Temporal's long poll).

Reported: jobs/s of each and their ratio, Temporal dev-server CPU seconds per job (from /proc),
history events per job, and the CPU per job of every other process, so the difference can be
located.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench.common import Server, median, notes, print_table, ratio, rounded
from bench.handwritten_workflow import HANDWRITTEN_WORKFLOW
from bench.http_client import HttpClient
from bench.procs import Proc, gateway_process, scratch_database, worker_process
from core.settings import Settings
from tests.fakes.http_server import FakeHTTPServer
from tests.fakes.llm_wire import openai_chat

REPO_DEFS = Path(__file__).resolve().parents[1] / "workflow_defs"

POLL_S = 0.5
MODEL = "bench-e2e-model"
KEY = "sk-bench-e2e-0123456789"


def llm(step_id: str, prompt: str) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "llm",
        "config": {"provider": "openai", "model": MODEL, "prompt_text": prompt},
    }


DEFINITION: dict[str, Any] = {
    "name": "bench_e2e_three_llm",
    "version": "1.0.0",
    "inputs": [{"name": "topic", "type": "string", "required": True}],
    "steps": [
        llm("outline", "Outline a short article about ${input.topic}."),
        llm("draft", "Write the article from this outline. ${steps.outline.content}"),
        llm("review", "Review this article: ${steps.draft.content}"),
    ],
    "output": {"final": "${steps.review.content}"},
}


def _settings(server: Server, upstream: FakeHTTPServer, defs: Any, database_url: str) -> Settings:
    return server.settings(
        "e2e",
        database_url=database_url,
        redis_url=os.environ.get("TEST_REDIS_URL") or None,
        openai_base_url=f"{upstream.url}/v1",
        openai_api_key=KEY,
        llm_default_provider="openai",
        workflow_defs_dir=defs,
    )


async def _product(api: HttpClient, n: int) -> tuple[float, list[str]]:
    started = time.perf_counter()
    created = await asyncio.gather(
        *(
            api.post(
                "/api/v1/jobs",
                json={"workflow_name": DEFINITION["name"], "input_data": {"topic": f"t{i}"}},
            )
            for i in range(n)
        )
    )
    for r in created:
        if r.status_code != 202:
            raise RuntimeError(f"submit answered {r.status_code}: {r.text[:300]}")
    ids = [r.json()["job_id"] for r in created]

    async def poll(job_id: str) -> None:
        # A plain client: GET every POLL_S until the job has ended.
        while True:
            body = (await api.get(f"/api/v1/jobs/{job_id}")).json()
            if body["status"] in ("completed", "failed", "cancelled", "timed_out"):
                if body["status"] != "completed":
                    raise RuntimeError(f"product job {job_id} ended {body['status']}")
                return
            await asyncio.sleep(POLL_S)

    await asyncio.gather(*(poll(i) for i in ids))
    return time.perf_counter() - started, ids


async def _handwritten(client: Client, settings: Settings, n: int) -> tuple[float, list[str]]:
    started = time.perf_counter()
    ids = [f"bench-hand-{uuid.uuid4().hex}" for _ in range(n)]
    handles = await asyncio.gather(
        *(
            client.start_workflow(
                HANDWRITTEN_WORKFLOW,
                {"job_id": job_id, "topic": f"t{i}", "provider": "openai"},
                id=job_id,
                task_queue=settings.temporal_task_queue,
                result_type=dict,
            )
            for i, job_id in enumerate(ids)
        )
    )
    await asyncio.gather(*(h.result() for h in handles))
    return time.perf_counter() - started, ids


async def _events_per_job(client: Client, ids: list[str]) -> float:
    sample = ids[:5]
    counts = [len((await client.get_workflow_handle(i).fetch_history()).events) for i in sample]
    return sum(counts) / len(counts)


async def run(server: Server, *, quick: bool) -> dict[str, Any]:
    n, rounds = (30, 1) if quick else (120, 3)
    defs = server.tmp / "e2e-defs"
    defs.mkdir(exist_ok=True)
    for name in ("services.json",):
        (defs / name).write_text((REPO_DEFS / name).read_text())
    (defs / "bench_e2e.json").write_text(json.dumps(DEFINITION))
    product: list[dict[str, float]] = []
    hand: list[dict[str, float]] = []
    work = server.tmp / "e2e"
    async with scratch_database(os.environ.get("TEST_DATABASE_URL"), server.tmp, "e2e") as url:
        with FakeHTTPServer() as upstream:
            upstream.route("POST", "/v1/chat/completions", openai_chat("An answer."))
            settings = _settings(server, upstream, defs, url)
            hand_settings = settings.model_copy(
                update={"temporal_task_queue": settings.temporal_task_queue + "-hand"}
            )
            async with (
                worker_process(settings, work) as worker,
                worker_process(
                    hand_settings, work, module="bench.handwritten_worker", name="hand-worker"
                ) as hand_worker,
                gateway_process(settings, work) as (base_url, gateway),
                HttpClient(base_url, timeout=60) as api,
            ):
                notes(
                    f"pids: dev server {','.join(map(str, server.pids))}, gateway {gateway.pid}, "
                    f"worker {worker.pid}, hand-written worker {hand_worker.pid}, "
                    f"load generator {os.getpid()}"
                )
                procs = {"gateway": gateway, "worker": worker, "hand_worker": hand_worker}
                await _product(api, 6)  # warm-up: imports, sandbox, connections
                await _handwritten(server.client, hand_settings, 6)
                for r in range(rounds):
                    sides = [
                        ("product", lambda: _product(api, n), product),
                        ("hand", lambda: _handwritten(server.client, hand_settings, n), hand),
                    ]
                    # Alternating, so drift (the server's growing history store) favours neither.
                    for side, phase, results in sides if r % 2 == 0 else sides[::-1]:
                        results.append(await _measure(side, phase, server, procs))
                        for proc in procs.values():
                            proc.check()
    p_rate = median([r["jobs_per_s"] for r in product])
    h_rate = median([r["jobs_per_s"] for r in hand])
    p_cpu = median([r["server_cpu_s_per_job"] for r in product])
    h_cpu = median([r["server_cpu_s_per_job"] for r in hand])
    p_events = median([r["events_per_job"] for r in product])
    h_events = median([r["events_per_job"] for r in hand])

    def per_job(results: list[dict[str, float]], key: str) -> float:
        return median([r[key] for r in results])

    database = "postgres" if settings.database_url.startswith("postgres") else "sqlite"
    rows: list[list[Any]] = [
        ["jobs/s", rounded(p_rate), rounded(h_rate), rounded(ratio(p_rate, h_rate))],
        [
            "dev-server CPU s per job",
            rounded(p_cpu, 4),
            rounded(h_cpu, 4),
            rounded(ratio(p_cpu, h_cpu)),
        ],
        [
            "history events per job",
            rounded(p_events, 1),
            rounded(h_events, 1),
            rounded(ratio(p_events, h_events)),
        ],
    ]
    for label, key in (
        ("worker CPU s per job", "worker_cpu_s_per_job"),
        ("gateway CPU s per job", "gateway_cpu_s_per_job"),
        ("load generator + fake CPU s per job", "client_cpu_s_per_job"),
        ("all processes CPU s per job", "total_cpu_s_per_job"),
    ):
        p, h = per_job(product, key), per_job(hand, key)
        rows.append([label, rounded(p, 4), rounded(h, 4), rounded(ratio(p, h))])
    print_table(
        f"end to end: {n} jobs of 3 llm steps at once, polled every {POLL_S} s "
        f"(mirror: {database}, redis: {'on' if settings.redis_url else 'off'}), "
        f"median of {rounds} round(s)",
        ["metric", "product path", "hand-written", "ratio product/hand"],
        rows,
    )
    notes(
        "each in its own process: dev server, gateway (`llmflow api`), product worker "
        "(`llmflow worker`), hand-written worker (bench.handwritten_worker), and this one "
        "(load generator + the fake LLM)",
        "product path per job, beyond the hand-written one: gateway validation + job row + "
        "start with search attributes; interpreter mirror writes (running, final) and "
        "JobStatus updates; GET polls every 0.5 s",
        "per-round jobs/s ratios: "
        + ", ".join(
            f"{ratio(p['jobs_per_s'], h['jobs_per_s']):.2f}"
            for p, h in zip(product, hand, strict=True)
        ),
    )
    return {
        "jobs": n,
        "rounds": rounds,
        "database": database,
        "redis": bool(settings.redis_url),
        "product": product,
        "handwritten": hand,
        "jobs_per_s_ratio": rounded(ratio(p_rate, h_rate), 3),
        "server_cpu_per_job_ratio": rounded(ratio(p_cpu, h_cpu), 3),
        "events_per_job_ratio": rounded(ratio(p_events, h_events), 3),
    }


async def _measure(
    side: str, phase: Any, server: Server, procs: dict[str, Proc]
) -> dict[str, float]:
    before = {name: proc.cpu() for name, proc in procs.items()}
    server0, own0 = server.cpu_seconds(), time.process_time()
    wall, ids = await phase()
    used = {name: proc.cpu() - before[name] for name, proc in procs.items()}
    server_cpu, own = server.cpu_seconds() - server0, time.process_time() - own0
    n = len(ids)
    worker = used["hand_worker"] if side == "hand" else used["worker"]
    return {
        "jobs": n,
        "wall_s": wall,
        "jobs_per_s": n / wall,
        "server_cpu_s_per_job": server_cpu / n,
        "worker_cpu_s_per_job": worker / n,
        "gateway_cpu_s_per_job": used["gateway"] / n,
        "client_cpu_s_per_job": own / n,
        "total_cpu_s_per_job": (server_cpu + own + sum(used.values())) / n,
        "events_per_job": await _events_per_job(server.client, ids),
    }
