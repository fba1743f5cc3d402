"""approval and wait_for_event: Temporal Updates with validators, through the REST API and the
temporal CLI, on the real stack."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.settings import Settings
from core.webhook_signing import verify_hex_signature
from tests import harness
from tests.api_server import gateway
from tests.fakes.http_server import FakeHTTPServer, Response
from tests.test_api_jobs import poll

REPO_DEFS = Path(__file__).resolve().parents[1] / "workflow_defs"
TEMPORAL = Path(sys.executable).parent / "temporal"
ALICE = {"Authorization": "Bearer alice-key-0123456789"}
OPS = {"Authorization": "Bearer ops-key-5555555555"}
HOOK_SECRET = "approvals-hook-secret-42"


def approval(**config: Any) -> dict[str, Any]:
    return {
        "id": "review",
        "type": "approval",
        "config": {"prompt": "Send the reply to ${input.customer}?", **config},
    }


def definition(name: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "version": "1.0.0", "steps": list(steps)}


DEFINITIONS = [
    definition("approve_plain", approval()),
    definition(
        "approve_schema",
        approval(
            schema={
                "type": "object",
                "required": ["reason"],
                "properties": {"reason": {"type": "string", "minLength": 3}},
            }
        ),
    ),
    definition("approve_ops_only", approval(approvers=["ops"])),
    definition("approve_timeout_fail", approval(timeout_seconds=1)),
    definition("approve_timeout_yes", approval(timeout_seconds=1, on_timeout="approve")),
    definition("approve_timeout_no", approval(timeout_seconds=1, on_timeout="reject")),
    definition(
        "event_wait",
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
        },
        {
            "id": "echo",
            "type": "transform",
            "config": {
                "operation": "coalesce",
                "config": {"values": ["${steps.paid.output.amount}"]},
            },
        },
    ),
    definition(
        "event_timeout_null",
        {
            "id": "paid",
            "type": "wait_for_event",
            "config": {"event": "late", "timeout_seconds": 1, "on_timeout": "null"},
        },
    ),
]


@pytest.fixture
def wait_settings(settings: Settings, tmp_path: Path) -> Settings:
    defs = tmp_path / "defs"
    shutil.copytree(REPO_DEFS, defs, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    for defn in DEFINITIONS:
        (defs / f"{defn['name']}.json").write_text(json.dumps(defn))
    return settings.model_copy(
        update={
            "workflow_defs_dir": defs,
            "api_keys": ["alice:alice-key-0123456789", "ops:ops-key-5555555555"],
            "api_admins": ["ops"],
            "llm_webhook_secret": HOOK_SECRET,
        }
    )


@pytest.fixture
async def api(
    temporal_client: Client, wait_settings: Settings, engine: Engine
) -> AsyncIterator[httpx.AsyncClient]:
    async with harness.running_worker(temporal_client, wait_settings, engine):
        async with gateway(wait_settings, engine=engine, temporal_client=temporal_client) as c:
            yield c


async def start(api: httpx.AsyncClient, name: str, **extra: Any) -> str:
    body = {"workflow_name": name, "input_data": {"customer": "Ada"}, **extra}
    resp = await api.post("/api/v1/jobs", json=body, headers=ALICE)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["job_id"])


async def until_waiting(api: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        view = (await api.get(f"/api/v1/jobs/{job_id}", headers=ALICE)).json()
        if view.get("waiting"):
            return view  # type: ignore[no-any-return]
        assert asyncio.get_running_loop().time() < deadline, view
        await asyncio.sleep(0.1)


async def test_an_approval_waits_shows_it_and_takes_one_decision(
    api: httpx.AsyncClient, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", "/hook", Response(200, "ok"))
    job_id = await start(api, "approve_plain", webhook_url=f"{upstream.url}/hook")
    view = await until_waiting(api, job_id)
    assert view["status"] == "running"
    [wait] = view["waiting"]
    assert wait["path"] == "review" and wait["kind"] == "approval"
    assert wait["prompt"] == "Send the reply to Ada?" and wait["timeout_at"] is None

    deadline = asyncio.get_running_loop().time() + 20
    while True:  # the mirror learns about the wait through an activity
        listed = (await api.get("/api/v1/jobs", params={"waiting": "true"}, headers=ALICE)).json()
        if job_id in {j["job_id"] for j in listed["jobs"]}:
            break
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.1)

    decided = await api.post(
        f"/api/v1/jobs/{job_id}/approvals/review",
        json={"approved": True, "comment": "fine"},
        headers=ALICE,
    )
    again = await api.post(
        f"/api/v1/jobs/{job_id}/approvals/review", json={"approved": False}, headers=ALICE
    )
    job = await poll(api, job_id, headers=ALICE)

    assert decided.status_code == 200, decided.text
    out = decided.json()
    assert out["approved"] is True and out["decided_by"] == "alice" and out["comment"] == "fine"
    assert again.status_code in (404, 409)  # decided: nothing waits (or the job is over)
    assert job["status"] == "completed" and job["output"]["approved"] is True
    assert job["waiting"] == []
    listed = (await api.get("/api/v1/jobs", params={"waiting": "true"}, headers=ALICE)).json()
    assert job_id not in {j["job_id"] for j in listed["jobs"]}
    # A workflow.waiting callback went out when the job started waiting, signed like the rest.
    waiting_hooks = [
        r
        for r in upstream.requests_to("/hook")
        if r.headers["x-webhook-event"] == "workflow.waiting"
    ]
    assert len(waiting_hooks) == 1
    hook = waiting_hooks[0]
    assert verify_hex_signature(HOOK_SECRET, hook.body, hook.headers["x-webhook-signature"])
    assert hook.json()["waiting"]["path"] == "review"
    assert hook.json()["respond"] == f"/api/v1/jobs/{job_id}/approvals/review"


async def test_bad_decisions_are_refused_before_they_enter_history(
    api: httpx.AsyncClient, temporal_client: Client
) -> None:
    job_id = await start(api, "approve_schema")
    await until_waiting(api, job_id)
    missing = await api.post(
        f"/api/v1/jobs/{job_id}/approvals/review", json={"approved": True}, headers=ALICE
    )
    wrong_path = await api.post(
        f"/api/v1/jobs/{job_id}/approvals/nope", json={"approved": True}, headers=ALICE
    )
    good = await api.post(
        f"/api/v1/jobs/{job_id}/approvals/review",
        json={"approved": True, "data": {"reason": "checked twice"}},
        headers=ALICE,
    )
    await poll(api, job_id, headers=ALICE)
    assert missing.status_code == 422, missing.text
    assert missing.json()["detail"][0]["loc"] == ["body", "data"]
    assert "reason" in missing.json()["message"]
    assert wrong_path.status_code == 409 and wrong_path.json()["error"] == "NotWaiting"
    assert good.status_code == 200 and good.json()["data"] == {"reason": "checked twice"}
    # Refused updates left no trace in the run's history.
    history = await temporal_client.get_workflow_handle(job_id).fetch_history()
    accepted = [
        e
        for e in history.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    assert len(accepted) == 1


async def test_only_named_approvers_may_decide(api: httpx.AsyncClient) -> None:
    job_id = await start(api, "approve_ops_only")
    await until_waiting(api, job_id)
    alice = await api.post(
        f"/api/v1/jobs/{job_id}/approvals/review", json={"approved": True}, headers=ALICE
    )
    ops = await api.post(
        f"/api/v1/jobs/{job_id}/approvals/review", json={"approved": False}, headers=OPS
    )
    job = await poll(api, job_id, headers=ALICE)
    assert alice.status_code == 403 and alice.json()["error"] == "Forbidden"
    assert ops.status_code == 200 and ops.json()["decided_by"] == "ops"
    assert job["output"]["approved"] is False


@pytest.mark.parametrize(
    ("name", "status", "approved"),
    [
        ("approve_timeout_fail", "failed", None),
        ("approve_timeout_yes", "completed", True),
        ("approve_timeout_no", "completed", False),
    ],
)
async def test_an_approval_times_out_as_configured(
    api: httpx.AsyncClient, name: str, status: str, approved: bool | None
) -> None:
    job_id = await start(api, name)
    job = await poll(api, job_id, headers=ALICE)
    assert job["status"] == status
    if approved is None:
        assert job["error"]["type"] == "TIMEOUT" and job["error"]["step_id"] == "review"
    else:
        assert job["output"]["approved"] is approved and job["output"]["decided_by"] == "timeout"


async def test_an_approval_from_the_temporal_cli(
    api: httpx.AsyncClient, temporal_client: Client
) -> None:
    job_id = await start(api, "approve_plain")
    await until_waiting(api, job_id)
    decision = {"path": "review", "approved": True, "decided_by": "temporal-cli"}
    proc = await asyncio.to_thread(
        subprocess.run,
        [
            str(TEMPORAL),
            "workflow",
            "update",
            "execute",
            "--address",
            temporal_client.service_client.config.target_host,
            "--namespace",
            temporal_client.namespace,
            "--workflow-id",
            job_id,
            "--name",
            "approve",
            "--input",
            json.dumps(decision),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TEMPORAL_CLI_SHOW_STACKS": "0"},
    )
    job = await poll(api, job_id, headers=ALICE)
    assert proc.returncode == 0, proc.stderr
    assert job["output"]["decided_by"] == "temporal-cli"


async def read_sse_until_waiting(api: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    async with api.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=ALICE) as resp:
        name = None
        async for line in resp.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: ") and name == "waiting":
                data: dict[str, Any] = json.loads(line.removeprefix("data: "))
                if data["waiting"]:
                    return data
    raise AssertionError("the stream ended without a waiting event")


async def test_wait_for_event_takes_a_valid_payload(api: httpx.AsyncClient) -> None:
    job_id = await start(api, "event_wait")
    streamed = await asyncio.wait_for(read_sse_until_waiting(api, job_id), 20)
    assert streamed["waiting"][0]["kind"] == "event"
    view = await until_waiting(api, job_id)
    assert view["waiting"][0]["event"] == "payment.settled"
    nothing = await api.post(f"/api/v1/jobs/{job_id}/events/other", json={}, headers=ALICE)
    bad = await api.post(
        f"/api/v1/jobs/{job_id}/events/payment.settled", json={"amount": "x"}, headers=ALICE
    )
    good = await api.post(
        f"/api/v1/jobs/{job_id}/events/payment.settled", json={"amount": 12.5}, headers=ALICE
    )
    job = await poll(api, job_id, headers=ALICE)
    assert nothing.status_code == 409
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == [
        "body",
        "payload",
        "amount",
    ]
    assert good.status_code == 200 and good.json() == {"amount": 12.5}
    assert job["status"] == "completed" and job["output"] == 12.5


async def test_wait_for_event_times_out_to_null(api: httpx.AsyncClient) -> None:
    job = await poll(api, await start(api, "event_timeout_null"), headers=ALICE)
    assert job["status"] == "completed" and job["output"] is None


async def test_cancelling_a_waiting_job_ends_it_cancelled(api: httpx.AsyncClient) -> None:
    job_id = await start(api, "approve_plain")
    await until_waiting(api, job_id)
    assert (await api.post(f"/api/v1/jobs/{job_id}/cancel", headers=ALICE)).status_code == 202
    job = await poll(api, job_id, headers=ALICE)
    assert job["status"] == "cancelled" and job["waiting"] == []


@pytest.mark.skipif(
    not os.environ.get("LLMFLOW_RECORD_HISTORIES"),
    reason="set LLMFLOW_RECORD_HISTORIES=1 to re-record",
)
async def test_record_approval_histories(api: httpx.AsyncClient, temporal_client: Client) -> None:
    """An approval decided over REST, and one that timed out, replayed in CI."""
    histories = Path(__file__).parent / "histories"
    decided = await start(api, "approve_plain")
    await until_waiting(api, decided)
    await api.post(
        f"/api/v1/jobs/{decided}/approvals/review", json={"approved": True}, headers=ALICE
    )
    timed_out = await start(api, "approve_timeout_no")
    event = await start(api, "event_wait")
    await until_waiting(api, event)
    await api.post(
        f"/api/v1/jobs/{event}/events/payment.settled", json={"amount": 1}, headers=ALICE
    )
    for job_id, name in (
        (decided, "approval_decided"),
        (timed_out, "approval_timed_out"),
        (event, "event_received"),
    ):
        await poll(api, job_id, headers=ALICE)
        history = await temporal_client.get_workflow_handle(job_id).fetch_history()
        (histories / f"{name}.json").write_text(history.to_json() + "\n")
