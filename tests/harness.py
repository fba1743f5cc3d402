"""Helpers for workflow tests: a real worker in the test's event loop, and run-to-result."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.engine import Engine
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from core.contracts import InterpreterInput, JobResult
from core.settings import Settings
from core.temporal import start_job
from worker.app import build_worker, worker_resources
from workflow_defs.loader import LoadedDefinition, validate_definition
from workflow_defs.services import load_services


@contextlib.asynccontextmanager
async def running_worker(client: Client, settings: Settings, engine: Engine) -> AsyncIterator[None]:
    async with worker_resources(settings, engine=engine) as res:
        async with build_worker(client, settings, res):
            yield


def load(definition: dict[str, Any], settings: Settings) -> LoadedDefinition:
    services = load_services(settings.workflow_defs_dir / "services.json")
    return validate_definition(
        definition, source="test.json", prompts_dir=settings.prompts_dir, has_service=services.has
    )


async def start(
    client: Client,
    settings: Settings,
    loaded: LoadedDefinition,
    input_data: dict[str, Any] | None = None,
) -> WorkflowHandle:
    inp = InterpreterInput(
        job_id=f"test-{uuid.uuid4()}", definition=loaded.snapshot(), input_data=input_data or {}
    )
    return await start_job(client, settings, inp)


async def run(
    client: Client,
    settings: Settings,
    loaded: LoadedDefinition,
    input_data: dict[str, Any] | None = None,
) -> JobResult:
    handle = await start(client, settings, loaded, input_data)
    return await handle.result()


async def run_failing(
    client: Client,
    settings: Settings,
    loaded: LoadedDefinition,
    input_data: dict[str, Any] | None = None,
) -> tuple[WorkflowHandle, WorkflowFailureError]:
    handle = await start(client, settings, loaded, input_data)
    try:
        await handle.result()
    except WorkflowFailureError as exc:
        return handle, exc
    raise AssertionError("the workflow was expected to fail")
