"""core.client.LlmflowClient against the real gateway + worker + Temporal dev server."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client

from api.fork_schemas import ForkRequest
from api.schemas import CancelAccepted, JobAccepted, JobView, RerunAccepted
from core.client import LlmflowClient, LlmflowError, ServerSentEvent, WaitTimeout, parse_sse
from core.settings import Settings
from tests import harness
from tests.api_server import gateway

REPO_DEFS = Path(__file__).resolve().parents[1] / "workflow_defs"
KEY = "web-key-0123456789abcdef"

DEFINITIONS = [
    {
        "name": "client_approval",
        "version": "1.0.0",
        "steps": [
            {"id": "review", "type": "approval", "config": {"prompt": "Ship ${input.what}?"}},
        ],
    },
    {
        "name": "client_event",
        "version": "1.0.0",
        "steps": [
            {
                "id": "paid",
                "type": "wait_for_event",
                "config": {
                    "event": "payment.settled",
                    "schema": {
                        "type": "object",
                        "required": ["amount"],
                        "properties": {"amount": {"type": "number"}},
                    },
                },
            }
        ],
    },
]


@pytest.fixture
def client_settings(settings: Settings, tmp_path: Path) -> Settings:
    defs = tmp_path / "defs"
    shutil.copytree(REPO_DEFS, defs, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    for defn in DEFINITIONS:
        (defs / f"{defn['name']}.json").write_text(json.dumps(defn))
    return settings.model_copy(
        update={
            "workflow_defs_dir": defs,
            "api_keys": [f"web:{KEY}"],
            "llm_default_provider": "mock",
            "llm_mock_latency_ms": 400,
        }
    )


@pytest.fixture
async def base_url(
    temporal_client: Client, client_settings: Settings, engine: Engine
) -> AsyncIterator[str]:
    async with harness.running_worker(temporal_client, client_settings, engine):
        async with gateway(client_settings, engine=engine, temporal_client=temporal_client) as api:
            yield str(api.base_url)


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[LlmflowClient]:
    async with LlmflowClient(base_url, api_key=KEY) as c:
        yield c


async def until_waiting(client: LlmflowClient, job_id: str) -> JobView:
    for _ in range(200):
        view = await client.get(job_id)
        if view.waiting:
            return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} never waited")


async def test_submit_then_wait_returns_the_completed_output(client: LlmflowClient) -> None:
    accepted = await client.submit("quickstart", {"topic": "durable execution"})
    assert isinstance(accepted, JobAccepted) and accepted.status == "queued"
    assert accepted.workflow_version == "1.0.0"

    job = await client.wait(accepted.job_id, timeout=60)

    assert isinstance(job, JobView)
    assert job.status == "completed", job.error
    assert job.job_id == accepted.job_id
    assert set(job.output) >= {"title", "points", "summary"}
    assert [s["id"] for s in (job.metadata or {})["steps"]] == ["explain", "bullet_text", "summary"]
    assert (await client.get(accepted.job_id)).output == job.output


async def test_events_yield_the_steps_in_order_and_end_with_the_job(
    client: LlmflowClient,
) -> None:
    accepted = await client.submit("quickstart", {"topic": "server-sent events"})

    events = [event async for event in client.events(accepted.job_id)]

    assert all(isinstance(e, ServerSentEvent) for e in events)
    assert events[-1].event == "job"
    assert {e.event for e in events} >= {"status", "step", "job"}
    final = JobView.model_validate(events[-1].json())
    assert final.status == "completed" and final.job_id == accepted.job_id
    steps = [(e.json()["step_id"], e.json()["phase"]) for e in events if e.event == "step"]
    assert steps.index(("explain", "started")) < steps.index(("explain", "finished"))
    finished = [step for step, phase in steps if phase == "finished"]
    assert finished == ["explain", "bullet_text", "summary"]
    ids = [int(e.id) for e in events if e.id is not None]
    assert ids == sorted(ids) and len(ids) == len(events)


async def test_approve_decides_a_waiting_approval(client: LlmflowClient) -> None:
    accepted = await client.submit("client_approval", {"what": "v2"})
    waiting = await until_waiting(client, accepted.job_id)
    assert waiting.waiting[0]["path"] == "review" and waiting.waiting[0]["prompt"] == "Ship v2?"

    decision = await client.approve(accepted.job_id, "review", comment="go", data={"n": 1})
    job = await client.wait(accepted.job_id, timeout=30)

    assert decision["approved"] is True and decision["decided_by"] == "web"
    assert decision["comment"] == "go" and decision["data"] == {"n": 1}
    assert job.status == "completed"
    with pytest.raises(LlmflowError) as again:
        await client.approve(accepted.job_id, "review")
    assert again.value.status_code == 409 and again.value.error == "NotWaiting"


async def test_cancel_ends_a_waiting_job_cancelled(client: LlmflowClient) -> None:
    accepted = await client.submit("client_approval", {"what": "nothing"})
    await until_waiting(client, accepted.job_id)

    cancel = await client.cancel(accepted.job_id)
    job = await client.wait(accepted.job_id, timeout=30)

    assert isinstance(cancel, CancelAccepted) and cancel.cancel_requested
    assert job.status == "cancelled"
    with pytest.raises(LlmflowError) as again:
        await client.cancel(accepted.job_id)
    assert again.value.status_code == 409


async def test_send_event_and_rerun(client: LlmflowClient) -> None:
    accepted = await client.submit("client_event", {})
    await until_waiting(client, accepted.job_id)
    with pytest.raises(LlmflowError) as bad:
        await client.send_event(accepted.job_id, "payment.settled", {"amount": "lots"})
    output = await client.send_event(accepted.job_id, "payment.settled", {"amount": 12.5})
    job = await client.wait(accepted.job_id, timeout=30)

    assert bad.value.status_code == 422 and bad.value.error == "ValidationError"
    assert ["body", "payload", "amount"] in bad.value.fields
    assert output == {"amount": 12.5}
    assert job.status == "completed" and job.output == {"amount": 12.5}

    done = await client.submit("quickstart", {"topic": "reruns"})
    await client.wait(done.job_id, timeout=60)
    rerun = await client.rerun(done.job_id, from_step="summary")
    assert isinstance(rerun, RerunAccepted) and rerun.rerun_of == done.job_id
    assert rerun.reused_steps == ["explain", "bullet_text"]
    assert (await client.wait(rerun.job_id, timeout=60)).status == "completed"


async def test_fork_forks_and_compare(client: LlmflowClient) -> None:
    done = await client.submit("quickstart", {"topic": "forks"})
    await client.wait(done.job_id, timeout=60)
    fork = await client.fork(done.job_id, ForkRequest(input_patch={"topic": "spoons"}))
    finished = await client.wait(fork.job_id, timeout=60)
    listed = await client.forks(done.job_id)
    compared = await client.compare(done.job_id, fork.job_id)
    with pytest.raises(LlmflowError) as bad:
        await client.fork(done.job_id, ForkRequest(from_step="nope"))

    assert fork.fork.parent == done.job_id and fork.fork.steps["explain"].action == "rerun"
    assert finished.status == "completed" and finished.output["topic"] == "spoons"
    assert finished.fork is not None and finished.fork.parent == done.job_id
    assert [f.job_id for f in listed.items] == [fork.job_id]
    assert compared.other_job_id == fork.job_id and compared.output_changed
    assert bad.value.status_code == 422 and ["body", "from_step"] in bad.value.fields


async def test_error_answers_raise_with_the_api_error_and_field(
    client: LlmflowClient, base_url: str
) -> None:
    with pytest.raises(LlmflowError) as missing:
        await client.get("no-such-job")
    with pytest.raises(LlmflowError) as invalid:
        await client.submit("quickstart", {})
    with pytest.raises(LlmflowError) as unknown:
        await client.submit("no_such_workflow", {})
    with pytest.raises(LlmflowError) as no_events:
        async for _ in client.events("no-such-job"):
            pass
    async with LlmflowClient(base_url, api_key="wrong") as stranger:
        with pytest.raises(LlmflowError) as unauthorised:
            await stranger.get("anything")

    assert missing.value.status_code == 404 and missing.value.error == "JobNotFound"
    assert "no-such-job" in missing.value.message
    assert invalid.value.status_code == 422 and invalid.value.error == "ValidationError"
    assert ["body", "input_data", "topic"] in invalid.value.fields
    assert unknown.value.status_code == 404 and unknown.value.error == "WorkflowNotFound"
    assert no_events.value.status_code == 404
    assert unauthorised.value.status_code == 401
    assert unauthorised.value.error == "InvalidAPISecret"


async def test_wait_gives_up_after_its_timeout(client: LlmflowClient) -> None:
    accepted = await client.submit("client_approval", {"what": "later"})
    with pytest.raises(WaitTimeout) as late:
        await client.wait(accepted.job_id, timeout=0.5, initial_interval=0.1)
    assert late.value.last is not None and late.value.last.status in ("queued", "running")
    await client.cancel(accepted.job_id)


def test_sse_parsing_follows_the_event_stream_rules() -> None:
    stream = (
        ": keep-alive\r\n\r\n"
        'id: 1\r\nevent: status\r\ndata: {"a": 1}\r\n\r\n'
        "event: step\rdata: line one\rdata:line two\r\r"
        "data\n\n"  # a field without a colon: empty data
        "retry: 250\nid: 7\ndata: x\n\n"
        "event: ignored\n\n"  # no data: nothing dispatched
        "data: unterminated"
    )
    events = parse_sse(stream)
    assert events == [
        ServerSentEvent("status", '{"a": 1}', "1"),
        ServerSentEvent("step", "line one\nline two", "1"),
        ServerSentEvent("message", "", "1"),
        ServerSentEvent("message", "x", "7", 250),
    ]
    assert events[0].json() == {"a": 1}


def test_sse_parsing_across_chunk_boundaries() -> None:
    from core.client import _SseParser

    text = 'event: step\r\ndata: {"step_id": "a"}\r\n\r\nevent: job\r\ndata: {}\r\n\r\n'
    for size in (1, 2, 3, 7):
        parser = _SseParser()
        events: list[Any] = []
        for start in range(0, len(text), size):
            events += parser.feed(text[start : start + size])
        assert [(e.event, e.json()) for e in events] == [("step", {"step_id": "a"}), ("job", {})]
