"""A run whose workflow task keeps failing makes no progress while Temporal calls it running:
the API, the alerts and /metrics must say so instead of showing a healthy job."""

from __future__ import annotations

import asyncio
import re
import uuid

from sqlalchemy.engine import Engine
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from core.db import list_alerts
from core.settings import Settings
from tests.api_server import gateway

with workflow.unsafe.imports_passed_through():
    from core.contracts import InterpreterInput, JobResult


@workflow.defn(name="InterpreterWorkflow")
class BrokenInterpreter:
    """Stands in for a deployment whose workflow code raises on every task."""

    @workflow.run
    async def run(self, inp: InterpreterInput) -> JobResult:
        raise RuntimeError("a bug in workflow code")


async def test_a_run_with_a_failing_workflow_task_is_reported_stuck(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    worker = Worker(
        temporal_client,
        task_queue=settings.temporal_task_queue,
        workflows=[BrokenInterpreter],
        workflow_runner=UnsandboxedWorkflowRunner(),  # a stand-in: nothing to guard
    )
    job = {"workflow_name": "quickstart", "input_data": {"topic": f"stuck-{uuid.uuid4()}"}}
    async with worker, gateway(settings, engine=engine, temporal_client=temporal_client) as api:
        job_id = (await api.post("/api/v1/jobs", json=job)).json()["job_id"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            view = (await api.get(f"/api/v1/jobs/{job_id}")).json()
            page = (await api.get("/metrics")).text
            stuck = re.search(r"^llmflow_runs_stuck (\d+)", page, re.M)
            if view["workflow_task_attempts"] and stuck and int(stuck.group(1)) >= 1:
                break
            assert loop.time() < deadline, (view, stuck)
            await asyncio.sleep(0.5)
        health = (await api.get("/api/v1/health/detailed")).json()
        await temporal_client.get_workflow_handle(job_id).terminate("test over")

    assert view["status"] in ("queued", "running")  # never `completed`
    assert view["workflow_task_attempts"] >= 2
    assert health["components"]["runs"]["status"] == "stuck"
    assert health["components"]["runs"]["stuck"][job_id] >= 2
    alerts = list_alerts(engine, job_id=job_id)
    assert [a.level for a in alerts] == ["ERROR"]  # one alert, however often it was seen
    assert "not progressing" in alerts[0].message and "workflow task" in alerts[0].message
