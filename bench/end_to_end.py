"""End to end: the whole product path against a hand-written workflow making the same calls.

Product side, as a user runs it: N jobs of a three-`llm`-step definition submitted at once
through `POST /api/v1/jobs` (the real gateway, in this process), each then polled with
`GET /api/v1/jobs/{id}` every 0.5 s until it ends; the mirror on (Postgres when
TEST_DATABASE_URL is set, else SQLite), Redis when TEST_REDIS_URL is set, search attributes, one
worker. The LLM provider is the OpenAI wire format pointed at a local fake that answers at once.

Hand-written side: a workflow that calls the same `llm_call` activity three times with the same
provider and fake, started directly on the same dev server with a plain start (no mirror, no
search attributes, no gateway), N at once, results awaited.

Reported: jobs/s of each and their ratio, dev-server CPU seconds per job (read from /proc: the
figure the product path must drive down), and history events per job.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from activities.http_errors import new_http_client
from activities.llm.activity import LlmActivities
from bench.common import (
    Server,
    children_cpu_seconds,
    median,
    notes,
    print_table,
    ratio,
    rounded,
)
from bench.handwritten_workflow import HANDWRITTEN_WORKFLOW, HandwrittenWorkflow
from core.db import make_engine
from core.settings import Settings
from tests.api_server import gateway
from tests.fakes.http_server import FakeHTTPServer
from tests.fakes.llm_wire import openai_chat
from worker.app import build_worker, sandbox_runner, worker_resources

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


def _settings(server: Server, upstream: FakeHTTPServer, defs: Any) -> Settings:
    return server.settings(
        "e2e",
        database_url=os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{server.tmp / 'e2e.db'}",
        redis_url=os.environ.get("TEST_REDIS_URL") or None,
        openai_base_url=f"{upstream.url}/v1",
        openai_api_key=KEY,
        llm_default_provider="openai",
        workflow_defs_dir=defs,
    )


async def _product(api: httpx.AsyncClient, n: int) -> tuple[float, list[str]]:
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
    ids = [r.json()["job_id"] for r in created]

    async def poll(job_id: str) -> None:
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
    n, rounds = (30, 1) if quick else (120, 2)
    defs = server.tmp / "e2e-defs"
    defs.mkdir(exist_ok=True)
    for name in ("services.json",):
        (defs / name).write_text((REPO_DEFS / name).read_text())
    (defs / "bench_e2e.json").write_text(json.dumps(DEFINITION))
    product: list[dict[str, float]] = []
    hand: list[dict[str, float]] = []
    with FakeHTTPServer() as upstream:
        upstream.route("POST", "/v1/chat/completions", openai_chat("An answer."))
        settings = _settings(server, upstream, defs)
        engine = make_engine(settings.database_url)
        hand_settings = settings.model_copy(
            update={"temporal_task_queue": settings.temporal_task_queue + "-hand"}
        )
        http = new_http_client()
        try:
            async with worker_resources(settings, engine=engine) as res:
                async with build_worker(server.client, settings, res):
                    async with gateway(
                        settings, engine=engine, temporal_client=server.client
                    ) as api:
                        await _product(api, 3)  # warm-up
                        async with Worker(
                            server.client,
                            task_queue=hand_settings.temporal_task_queue,
                            workflows=[HandwrittenWorkflow],
                            activities=[LlmActivities(hand_settings, http).llm_call],
                            workflow_runner=sandbox_runner(),
                        ):
                            await _handwritten(server.client, hand_settings, 3)
                            for _ in range(rounds):
                                product.append(await _measure(lambda: _product(api, n), server))
                                hand.append(
                                    await _measure(
                                        lambda: _handwritten(server.client, hand_settings, n),
                                        server,
                                    )
                                )
        finally:
            await http.aclose()
            engine.dispose()
    p_rate = median([r["jobs_per_s"] for r in product])
    h_rate = median([r["jobs_per_s"] for r in hand])
    p_cpu = median([r["server_cpu_s_per_job"] for r in product])
    h_cpu = median([r["server_cpu_s_per_job"] for r in hand])
    p_events = median([r["events_per_job"] for r in product])
    h_events = median([r["events_per_job"] for r in hand])
    database = "postgres" if settings.database_url.startswith("postgres") else "sqlite"
    print_table(
        f"end to end: {n} jobs of 3 llm steps at once, polled every {POLL_S} s "
        f"(mirror: {database}, redis: {'on' if settings.redis_url else 'off'}), "
        f"median of {rounds} round(s)",
        ["metric", "product path", "hand-written", "ratio product/hand"],
        [
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
        ],
    )
    notes(
        "product path per job, beyond the hand-written one: gateway validation + job row + "
        "start with search attributes; interpreter mirror writes (running, final) and "
        "JobStatus updates; GET polls every 0.5 s",
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


async def _measure(phase: Any, server: Server) -> dict[str, float]:
    cpu0, own0 = children_cpu_seconds(), time.process_time()
    wall, ids = await phase()
    cpu, own = children_cpu_seconds() - cpu0, time.process_time() - own0
    return {
        "jobs_per_s": len(ids) / wall,
        "process_cpu_share": own / wall,
        "server_cpu_s_per_job": cpu / len(ids),
        "events_per_job": await _events_per_job(server.client, ids),
    }
