"""Runs changed with Temporal's own tools (the `temporal` CLI): the mirror follows (reconciler)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.contracts import INTERPRETER_WORKFLOW, InterpreterInput
from core.settings import Settings
from tests import harness
from tests.api_server import gateway
from tests.conftest import TEMPORAL_BIN
from tests.fakes.http_server import FakeHTTPServer
from tests.fakes.llm_wire import openai_chat
from workflow_defs.catalog import load_catalog

CHAT = "/openrouter/api/v1/chat/completions"


def temporal_cli(client: Client, *args: str) -> str:
    cmd = [
        str(TEMPORAL_BIN),
        *args,
        "--address",
        client.service_client.config.target_host,
        "--namespace",
        client.namespace,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def wait_status(api: Any, job_id: str, wanted: str, within: float = 30) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        job = (await api.get(f"/api/v1/jobs/{job_id}")).json()
        if job["status"] == wanted:
            return job
        assert asyncio.get_running_loop().time() < deadline, (
            f"still {job['status']}, wanted {wanted}"
        )
        await asyncio.sleep(0.25)


def mirror_row(engine: Engine, job_id: str) -> Any:
    from core.db import get_job

    return get_job(engine, job_id)


async def wait_row(engine: Engine, job_id: str, wanted: str, within: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        row = await asyncio.to_thread(mirror_row, engine, job_id)
        if row is not None and row.status == wanted:
            return row
        assert asyncio.get_running_loop().time() < deadline, (
            f"row still {row and row.status}, wanted {wanted}"
        )
        await asyncio.sleep(0.25)


async def test_terminate_cancel_and_timeout_from_outside_are_mirrored(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    slow = settings.model_copy(
        update={"llm_default_provider": "mock", "llm_mock_latency_ms": 60000}
    )
    quickstart = load_catalog(slow).definitions.get("quickstart")
    assert quickstart is not None
    async with harness.running_worker(temporal_client, slow, engine):
        async with gateway(slow, engine=engine, temporal_client=temporal_client) as api:
            terminated = (
                await api.post(
                    "/api/v1/jobs",
                    json={"workflow_name": "quickstart", "input_data": {"topic": "t"}},
                )
            ).json()["job_id"]
            cancelled = (
                await api.post(
                    "/api/v1/jobs",
                    json={"workflow_name": "quickstart", "input_data": {"topic": "c"}},
                )
            ).json()["job_id"]
            await wait_row(engine, terminated, "running")
            await wait_row(engine, cancelled, "running")
            temporal_cli(
                temporal_client, "workflow", "terminate", "-w", terminated, "--reason", "stuck, ops"
            )
            temporal_cli(temporal_client, "workflow", "cancel", "-w", cancelled)

            # A run given an execution timeout by whoever started it, e.g. `temporal workflow start`.
            timed_out = f"ops-{uuid.uuid4()}"
            inp = InterpreterInput(
                job_id=timed_out, definition=quickstart.snapshot(), input_data={"topic": "x"}
            )
            await temporal_client.start_workflow(
                INTERPRETER_WORKFLOW,
                inp,
                id=timed_out,
                task_queue=slow.temporal_task_queue,
                execution_timeout=timedelta(seconds=2),
            )
            await wait_row(engine, timed_out, "running")

            t_job = await wait_status(api, terminated, "failed")
            c_job = await wait_status(api, cancelled, "cancelled")
            to_row = await wait_row(engine, timed_out, "timed_out")

    assert t_job["error"]["type"] == "TERMINATED" and "stuck, ops" in t_job["error"]["message"]
    assert mirror_row(engine, terminated).status == "failed"
    assert c_job["error"]["type"] == "CANCELLED"
    assert to_row.error["type"] == "WORKFLOW_TIMEOUT"


async def test_reset_reruns_and_the_mirror_shows_the_new_run(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", CHAT, openai_chat(json.dumps({"title": "T", "points": ["a", "b", "c"]})))
    async with harness.running_worker(temporal_client, settings, engine):
        async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
            job_id = (
                await api.post(
                    "/api/v1/jobs",
                    json={"workflow_name": "quickstart", "input_data": {"topic": "r"}},
                )
            ).json()["job_id"]
            first = await wait_status(api, job_id, "completed")
            temporal_cli(
                temporal_client,
                "workflow",
                "reset",
                "-w",
                job_id,
                "--type",
                "FirstWorkflowTask",
                "--reason",
                "re-run",
            )
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                job = (await api.get(f"/api/v1/jobs/{job_id}")).json()
                if (
                    job["temporal"]["run_id"] != first["temporal"]["run_id"]
                    and job["status"] == "completed"
                ):
                    break
                assert asyncio.get_running_loop().time() < deadline, job
                await asyncio.sleep(0.25)
    row = mirror_row(engine, job_id)
    assert row.run_id == job["temporal"]["run_id"] != first["temporal"]["run_id"]
    assert row.status == "completed" and len(upstream.requests_to(CHAT)) == 2
