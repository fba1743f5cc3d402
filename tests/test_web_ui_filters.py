"""The Web UI filters the README documents find what they say, on a real dev server.

`JobStatus` is ours: the interpreter sets it as the job moves. A run closed from outside
(`temporal workflow terminate`, a run timeout) cannot have its search attributes updated, so it
keeps the last value (`running`), while the API says `failed` / `timed_out`. `ExecutionStatus` is
Temporal's own and is always right about how the run closed. The documented queries combine the
two; each is run here as written, scoped to this test's task queue.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from temporalio.client import Client, WorkflowExecutionStatus

from core.contracts import INTERPRETER_WORKFLOW, InterpreterInput
from core.search_attributes import JOB_STATUS, job_search_attributes
from core.settings import Settings
from tests import harness
from tests.fakes.http_server import FakeHTTPServer
from tests.fakes.llm_wire import openai_error

README = Path(__file__).resolve().parents[1] / "README.md"
CHAT = "/openrouter/api/v1/chat/completions"

# The README's filters (Web UI search box, or `temporal workflow list --query '…'`).
BY_WORKFLOW = 'WorkflowName="quickstart"'
FAILED = 'JobStatus="failed" OR ExecutionStatus="Terminated"'
FAILED_IN_WORKFLOW = (
    'WorkflowName="quickstart" AND (JobStatus="failed" OR ExecutionStatus="Terminated")'
)
TIMED_OUT = 'JobStatus="timed_out" OR ExecutionStatus="TimedOut"'
CANCELLED = 'ExecutionStatus="Canceled"'
NOT_COMPLETED = 'ExecutionStatus="Failed" OR ExecutionStatus="Terminated" OR ExecutionStatus="TimedOut" OR ExecutionStatus="Canceled"'
RUNNING = 'ExecutionStatus="Running"'
COMPLETED = 'ExecutionStatus="Completed"'
DOCUMENTED = [
    BY_WORKFLOW,
    FAILED,
    FAILED_IN_WORKFLOW,
    TIMED_OUT,
    CANCELLED,
    NOT_COMPLETED,
    RUNNING,
    COMPLETED,
]

VERSION = "0.0.1"


def definition(*steps: dict[str, Any]) -> dict[str, Any]:
    # Named like the shipped workflow so the README's examples run verbatim.
    return {"name": "quickstart", "version": VERSION, "steps": list(steps)}


WAITS = definition({"id": "go", "type": "wait_for_event", "config": {"event": "go"}})
CALLS_LLM = definition(
    {
        "id": "ask",
        "type": "llm",
        "config": {"model": "openai/gpt-4o-mini", "prompt_text": "Say hi"},
    }
)
COMPLETES = definition(
    {
        "id": "shout",
        "type": "transform",
        "config": {"operation": "map", "input": ["a"], "config": {"expression": "item.upper()"}},
    }
)


async def matching(client: Client, query: str, queue: str) -> set[str]:
    return {wf.id async for wf in client.list_workflows(f'({query}) AND TaskQueue="{queue}"')}


async def wait_for(client: Client, query: str, queue: str, expected: set[str]) -> set[str]:
    """Polls until the query finds `expected` (visibility lags the run by a moment)."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        found = await matching(client, query, queue)
        if found == expected or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.2)


async def job_status(client: Client, job_id: str) -> str | None:
    desc = await client.get_workflow_handle(job_id).describe()
    return desc.typed_search_attributes.get(JOB_STATUS)


async def test_documented_filters_find_terminated_failed_and_timed_out_jobs(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", CHAT, openai_error(401, "bad key"))  # non-retryable: the job fails
    queue = settings.temporal_task_queue
    waits = harness.load(WAITS, settings)
    async with harness.running_worker(temporal_client, settings, engine):
        completed = (
            await harness.start(temporal_client, settings, harness.load(COMPLETES, settings))
        ).id
        failed, _ = await harness.run_failing(
            temporal_client, settings, harness.load(CALLS_LLM, settings)
        )
        running = (await harness.start(temporal_client, settings, waits)).id
        terminated = (await harness.start(temporal_client, settings, waits)).id
        cancelled = (await harness.start(temporal_client, settings, waits)).id
        # A run given an execution timeout by whoever started it (`temporal workflow start`).
        timed_out = f"test-{uuid.uuid4()}"
        await temporal_client.start_workflow(
            INTERPRETER_WORKFLOW,
            InterpreterInput(job_id=timed_out, definition=waits.snapshot(), input_data={}),
            id=timed_out,
            task_queue=queue,
            search_attributes=job_search_attributes("quickstart", VERSION),
            execution_timeout=timedelta(seconds=2),
        )
        await temporal_client.get_workflow_handle(completed).result()
        for job_id in (running, terminated, cancelled, timed_out):
            deadline = asyncio.get_running_loop().time() + 30
            while await job_status(temporal_client, job_id) != "running":
                assert asyncio.get_running_loop().time() < deadline, job_id
                await asyncio.sleep(0.1)

        await temporal_client.get_workflow_handle(terminated).terminate(reason="stuck, ops")
        await temporal_client.get_workflow_handle(cancelled).cancel()
        for job_id, status in [
            (terminated, WorkflowExecutionStatus.TERMINATED),
            (cancelled, WorkflowExecutionStatus.CANCELED),
            (timed_out, WorkflowExecutionStatus.TIMED_OUT),
            (failed.id, WorkflowExecutionStatus.FAILED),
        ]:
            deadline = asyncio.get_running_loop().time() + 30
            while (await temporal_client.get_workflow_handle(job_id).describe()).status != status:
                assert asyncio.get_running_loop().time() < deadline, (job_id, status)
                await asyncio.sleep(0.1)

        # Why JobStatus alone is not enough: a run closed from outside keeps its last value.
        assert await job_status(temporal_client, terminated) == "running"
        assert await job_status(temporal_client, timed_out) == "running"
        assert await job_status(temporal_client, failed.id) == "failed"
        assert await wait_for(temporal_client, 'JobStatus="failed"', queue, {failed.id}) == {
            failed.id
        }

        everything = {completed, failed.id, running, terminated, cancelled, timed_out}
        expected = {
            BY_WORKFLOW: everything,
            FAILED: {failed.id, terminated},
            FAILED_IN_WORKFLOW: {failed.id, terminated},
            TIMED_OUT: {timed_out},
            CANCELLED: {cancelled},
            NOT_COMPLETED: {failed.id, terminated, cancelled, timed_out},
            RUNNING: {running},
            COMPLETED: {completed},
        }
        assert set(expected) == set(DOCUMENTED)
        for query, jobs in expected.items():
            assert await wait_for(temporal_client, query, queue, jobs) == jobs, query
        await temporal_client.get_workflow_handle(running).terminate(reason="test over")


async def test_each_job_reads_name_and_version_in_the_web_ui_list(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    """The list's rows show the run's static summary ("quickstart 0.0.1") beside the job id."""
    async with harness.running_worker(temporal_client, settings, engine):
        handle = await harness.start(temporal_client, settings, harness.load(COMPLETES, settings))
        await handle.result()
    desc = await handle.describe()
    assert await desc.static_summary() == f"quickstart {VERSION}"
    listed = [wf async for wf in temporal_client.list_workflows(f'WorkflowId="{handle.id}"')]
    assert [wf.workflow_type for wf in listed] == [INTERPRETER_WORKFLOW]


def test_the_readme_documents_these_filters() -> None:
    text = README.read_text()
    missing = [query for query in DOCUMENTED if query not in text]
    assert missing == [], missing
