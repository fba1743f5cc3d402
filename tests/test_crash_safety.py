"""Crash safety with real processes: a killed worker, a restarted gateway, a database outage."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.contracts import InterpreterInput, RunOptions, WebhookTarget
from core.db import get_job, make_engine
from core.settings import Settings
from core.temporal import start_job
from tests import harness
from tests.conftest import OPENROUTER_KEY
from tests.fakes.http_server import FakeHTTPServer, Request, Response
from tests.fakes.llm_wire import openai_chat_body
from tests.fakes.tcp_proxy import TcpProxy

REPO = Path(__file__).resolve().parents[1]
CHAT = "/openrouter/api/v1/chat/completions"
HOOK = "/hooks/crash"
WEBHOOK_SECRET = "crash-test-secret-123"


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENROUTER", "OPENAI", "ANTHROPIC"))
    }
    env.update(
        {
            "ENVIRONMENT": "test",
            "TEMPORAL_ADDRESS": settings.temporal_address,
            "TEMPORAL_NAMESPACE": settings.temporal_namespace,
            "TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
            "DATABASE_URL": settings.database_url,
            "OPENROUTER_BASE_URL": settings.openrouter_base_url,
            "OPENROUTER_API_KEY": OPENROUTER_KEY,
            "WEBHOOK_ALLOW_PRIVATE": "true",
            "LLM_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "LOG_LEVEL": "WARNING",
        }
    )
    env.update(extra)
    return env


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "core.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    proc.wait(timeout=30)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        kill(proc)


async def until(predicate: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_worker_killed_mid_llm_call_job_completes_with_one_webhook(
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    calls = 0

    def chat(req: Request) -> Response:
        nonlocal calls
        calls += 1
        # The first call hangs as a slow model would; the worker dies while waiting for it.
        delay = 60.0 if calls == 1 else 0.0
        return Response(200, openai_chat_body("recovered answer"), delay=delay)

    upstream.route("POST", CHAT, chat)
    upstream.route("POST", HOOK, Response(200, "ok"))
    defn = {
        "name": "crashy",
        "version": "1.0.0",
        "steps": [
            {
                "id": "slow_llm",
                "type": "llm",
                "timeout_seconds": 6,
                "retry": {"max_retries": 3, "initial_delay": 0.5},
                "config": {"model": "openai/gpt-4o-mini", "prompt_text": "take your time"},
            }
        ],
    }
    loaded = harness.load(defn, settings)
    env = process_env(settings)
    processes.append(spawn(["worker"], env))
    inp = InterpreterInput(
        job_id=f"crash-{os.urandom(6).hex()}",
        definition=loaded.snapshot(),
        webhook=WebhookTarget(url=upstream.url + HOOK, secret_ref="env"),
    )
    handle = await start_job(temporal_client, settings, inp)

    async def llm_in_flight() -> bool:
        return len(upstream.requests_to(CHAT)) >= 1

    await until(llm_in_flight, 60, "the first LLM call")
    kill(processes[0])  # SIGKILL: no graceful shutdown, the attempt just vanishes
    processes.append(spawn(["worker"], env))
    result = await asyncio.wait_for(handle.result(), timeout=90)

    async def webhook_arrived() -> bool:
        return len(upstream.requests_to(HOOK)) >= 1

    await until(webhook_arrived, 60, "the completion webhook")
    await asyncio.sleep(2)  # any duplicate delivery would show up now
    assert result.status == "completed" and result.output["content"] == "recovered answer"
    assert result.steps["slow_llm"].attempts == 2
    hooks = upstream.requests_to(HOOK)
    assert len(hooks) == 1, "exactly one logical delivery"
    assert len({h.headers["x-webhook-id"] for h in hooks}) == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_gateway_restart_while_jobs_run_loses_nothing(
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    slow = settings.model_copy(update={"llm_default_provider": "mock", "llm_mock_latency_ms": 1500})
    port = free_port()
    env = process_env(slow, PORT=str(port), LLM_DEFAULT_PROVIDER="mock")
    base = f"http://127.0.0.1:{port}"

    async def gateway_up() -> bool:
        try:
            async with httpx.AsyncClient() as c:
                return (await c.get(base + "/health", timeout=2)).status_code == 200
        except httpx.HTTPError:
            return False

    async with harness.running_worker(temporal_client, slow, engine):
        processes.append(spawn(["api", "--port", str(port)], env))
        await until(gateway_up, 60, "the gateway")
        async with httpx.AsyncClient(base_url=base, timeout=10) as api:
            ids = [
                (
                    await api.post(
                        "/api/v1/jobs",
                        json={"workflow_name": "quickstart", "input_data": {"topic": f"t{i}"}},
                    )
                ).json()["job_id"]
                for i in range(5)
            ]
        kill(processes[0])
        processes.append(spawn(["api", "--port", str(port)], env))
        await until(gateway_up, 60, "the restarted gateway")
        async with httpx.AsyncClient(base_url=base, timeout=10) as api:

            async def all_done() -> bool:
                statuses = [(await api.get(f"/api/v1/jobs/{j}")).json()["status"] for j in ids]
                return all(s == "completed" for s in statuses)

            await until(all_done, 60, "every job to complete")
    for job_id in ids:
        row = get_job(engine, job_id)
        assert row is not None and row.status == "completed"


@pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"),
    reason="needs a real Postgres (TEST_DATABASE_URL)",
)
async def test_database_down_while_the_job_finishes(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    real = urlsplit(settings.database_url)
    proxy = TcpProxy(real.hostname or "127.0.0.1", real.port or 5432)
    try:
        user = f"{real.username}@" if real.username else ""
        via_proxy = settings.database_url.replace(real.netloc, f"{user}127.0.0.1:{proxy.port}")
        worker_settings = settings.model_copy(
            update={
                "database_url": via_proxy,
                "llm_default_provider": "mock",
                "llm_mock_latency_ms": 1500,
            }
        )
        worker_engine = make_engine(via_proxy)
        quickstart = harness.load(
            json.loads((REPO / "workflow_defs" / "quickstart.json").read_text()), worker_settings
        )
        async with harness.running_worker(temporal_client, worker_settings, worker_engine):
            inp = InterpreterInput(
                job_id=f"dbdown-{os.urandom(6).hex()}",
                definition=quickstart.snapshot(),
                input_data={"topic": "outage", "audience": "ops"},
                options=RunOptions(mirror_budget_seconds=3),
            )
            handle = await start_job(temporal_client, worker_settings, inp)

            async def row_running() -> bool:
                row = get_job(engine, inp.job_id)
                return row is not None and row.status == "running"

            await until(row_running, 30, "the running row")
            proxy.down()
            # The job completes in Temporal although its final mirror write can't land.
            result = await asyncio.wait_for(handle.result(), timeout=60)
            assert result.status == "completed"
            row = get_job(engine, inp.job_id)
            assert row is not None and row.status == "running"
            proxy.restore()

            async def row_completed() -> bool:
                row = get_job(engine, inp.job_id)
                return row is not None and row.status == "completed"

            await until(row_completed, 60, "the mirror to catch up")
        row = get_job(engine, inp.job_id)
        assert row is not None and row.output == result.output
        worker_engine.dispose()
    finally:
        proxy.stop()
