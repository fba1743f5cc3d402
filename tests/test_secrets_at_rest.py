"""Per-job webhook secrets at rest: sealed under LLMFLOW_SECRET_KEY, rotated, refused without a
key in production, and deleted once the job's completion delivery ends."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.job_secrets import delete_job_secret
from api.main import create_app
from core.contracts import WebhookDeliveryInput, WebhookDeliveryResult
from core.db import list_deliveries
from core.models import JobSecret
from core.secret_box import (
    KEY_ENV,
    ProductionWithoutSecretKey,
    SecretBox,
    SecretKeyError,
    SecretUnavailable,
    check_secret_key_config,
    parse_keys,
)
from core.settings import Settings
from tests import harness
from tests.api_server import gateway
from tests.fakes.http_server import FakeHTTPServer, Response
from tests.fakes.llm_wire import openai_chat
from tests.test_api_jobs import poll
from tests.test_completion_webhook import verify as verify_signed
from tests.test_completion_webhook import wait_for_delivery

CHAT = "/openrouter/api/v1/chat/completions"
HOOK = "/hooks/at-rest"
SECRET = "per-job-secret-at-rest-5c9a1e"
QUICK = {"workflow_name": "quickstart", "input_data": {"topic": "secrets at rest"}}
KEY_OLD = Fernet.generate_key().decode()
KEY_NEW = Fernet.generate_key().decode()
HISTORIES = Path(__file__).parent / "histories"


def keyed(settings: Settings, *keys: str, **overrides: object) -> Settings:
    return settings.model_copy(
        update={"llmflow_secret_key": SecretStr(",".join(keys)) if keys else None, **overrides}
    )


def box(*keys: str) -> SecretBox:
    return SecretBox(parse_keys(",".join(keys)))


def stored(engine: Engine, job_id: str) -> str | None:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT webhook_secret FROM job_secrets WHERE job_id = :j"), {"j": job_id}
        ).first()
    return row[0] if row else None


def store(engine: Engine, job_id: str, value: str) -> None:
    with Session(engine) as session:
        session.add(JobSecret(job_id=job_id, webhook_secret=value))
        session.commit()


# --- the box ------------------------------------------------------------------------------------


def test_sealed_value_is_prefixed_and_opens_only_with_its_key() -> None:
    sealed = box(KEY_NEW).seal(SECRET)
    assert sealed.startswith("fernet:") and SECRET not in sealed
    assert box(KEY_NEW).open(sealed) == SECRET
    with pytest.raises(SecretUnavailable, match=KEY_ENV):
        box(KEY_OLD).open(sealed)
    with pytest.raises(SecretUnavailable, match=f"{KEY_ENV} is not set"):
        SecretBox().open(sealed)


def test_legacy_and_keyless_values_read_as_the_secret() -> None:
    assert box(KEY_NEW).open(SECRET) == SECRET  # a row from before sealing: no prefix
    assert SecretBox().open(SECRET) == SECRET
    assert SecretBox().seal(SECRET) == f"plain:{SECRET}"  # development/test without a key
    assert box(KEY_NEW).open(f"plain:{SECRET}") == SECRET


def test_rotation_new_key_first_still_opens_rows_sealed_under_the_old_one() -> None:
    under_old = box(KEY_OLD).seal(SECRET)
    rotating = box(KEY_NEW, KEY_OLD)
    assert rotating.open(under_old) == SECRET
    under_new = rotating.seal(SECRET)
    assert box(KEY_NEW).open(under_new) == SECRET  # the first key encrypts
    with pytest.raises(SecretUnavailable):
        box(KEY_OLD).open(under_new)
    # A rerun's copy is sealed under the current key, whatever the original was.
    for original in (under_old, SECRET, f"plain:{SECRET}"):
        copy = rotating.reseal(original)
        assert copy.startswith("fernet:") and box(KEY_NEW).open(copy) == SECRET
    # One it can't open is copied as it is: its delivery reports the missing key.
    assert box(KEY_NEW).reseal(under_old) == under_old


def test_malformed_key_is_refused_without_echoing_it(settings: Settings) -> None:
    with pytest.raises(SecretKeyError, match=f"{KEY_ENV} entry 2") as exc:
        check_secret_key_config(keyed(settings, KEY_NEW, "not-a-fernet-key"))
    assert "not-a-fernet-key" not in str(exc.value)
    assert "Fernet.generate_key()" in str(exc.value)


def test_production_gateway_refuses_to_start_without_a_key(settings: Settings) -> None:
    production = keyed(settings, environment="production", api_keys=["ops:ops-key-0123456789"])
    with pytest.raises(ProductionWithoutSecretKey, match=KEY_ENV):
        create_app(production)
    with pytest.raises(ProductionWithoutSecretKey):
        create_app(keyed(production, " , "))  # only separators: still no key
    create_app(keyed(production, KEY_NEW))
    create_app(keyed(settings))  # test (and development) store plain:<secret> instead


# --- the write path, on the test database -------------------------------------------------------


@pytest.mark.parametrize("secret", [SECRET, "s" * 500], ids=["short", "longest-allowed"])
async def test_submitted_secret_is_stored_sealed(
    temporal_client: Client, settings: Settings, engine: Engine, secret: str
) -> None:
    # No worker: the job stays queued, the row written by POST /jobs is what is inspected.
    # Sealing lengthens a secret: the longest one accepted must still fit the column.
    hooked = keyed(settings, KEY_NEW, KEY_OLD)
    body = {**QUICK, "webhook_url": "http://127.0.0.1:9/hook", "webhook_secret": secret}
    async with gateway(hooked, engine=engine, temporal_client=temporal_client) as api:
        resp = await api.post("/api/v1/jobs", json=body)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    try:
        value = stored(engine, job_id)
        assert value is not None and value.startswith("fernet:") and secret not in value
        assert box(KEY_NEW).open(value) == secret
    finally:
        await temporal_client.get_workflow_handle(job_id).terminate("test done")
        delete_job_secret(engine, job_id)


# --- the delivery workflow: reads, then forgets -------------------------------------------------


async def deliver(
    client: Client, settings: Settings, job_id: str, url: str, event: str
) -> WebhookDeliveryResult:
    return await client.execute_workflow(
        "WebhookDeliveryWorkflow",
        WebhookDeliveryInput(
            job_id=job_id,
            url=url,
            secret_ref=f"job:{job_id}",
            event=event,
            delivery_id=f"whd_{uuid.uuid4().hex}",
            payload={"event": event, "job_id": job_id},
        ),
        id=f"{job_id}:webhook:test:{event}",
        task_queue=settings.temporal_task_queue,
        result_type=WebhookDeliveryResult,
    )


async def test_step_events_keep_the_secret_and_the_final_delivery_forgets_it(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", HOOK, Response(200, "ok"))
    upstream.route("POST", "/hooks/gone", Response(410, "gone"))
    hooked = keyed(settings, KEY_NEW, KEY_OLD)
    legacy, sealed = f"legacy-{uuid.uuid4()}", f"sealed-{uuid.uuid4()}"
    store(engine, legacy, SECRET)
    store(engine, sealed, box(KEY_OLD).seal(SECRET))
    async with harness.running_worker(temporal_client, hooked, engine):
        step = await deliver(
            temporal_client, hooked, legacy, upstream.url + HOOK, "llm.step.completed"
        )
        assert step.delivered and stored(engine, legacy) == SECRET
        done = await deliver(
            temporal_client, hooked, legacy, upstream.url + HOOK, "workflow.completed"
        )
        gone = await deliver(
            temporal_client, hooked, sealed, upstream.url + "/hooks/gone", "workflow.failed"
        )
    assert done.delivered and not gone.delivered and gone.status_code == 410
    assert [verify_signed(r, SECRET)["event"] for r in upstream.requests_to(HOOK)] == [
        "llm.step.completed",
        "workflow.completed",
    ]
    verify_signed(upstream.requests_to("/hooks/gone")[0], SECRET)  # opened with the second key
    assert stored(engine, legacy) is None and stored(engine, sealed) is None


async def test_production_worker_without_the_key_gives_up_with_config_error(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", HOOK, Response(200, "ok"))
    job_id = f"nokey-{uuid.uuid4()}"
    store(engine, job_id, box(KEY_NEW).seal(SECRET))
    keyless = keyed(settings, environment="production")
    async with harness.running_worker(temporal_client, keyless, engine):
        result = await deliver(
            temporal_client, keyless, job_id, upstream.url + HOOK, "workflow.completed"
        )
    assert not result.delivered and result.error is not None
    assert result.error["type"] == "CONFIG_ERROR" and result.error["retryable"] is False
    assert KEY_ENV in result.error["message"]
    # Not retried, and nothing unsigned went out.
    assert [r.outcome for r in list_deliveries(engine, job_id)] == ["failed"]
    assert upstream.requests_to(HOOK) == [] and stored(engine, job_id) is None


# --- end to end: gateway + worker ---------------------------------------------------------------


async def test_completed_job_webhook_verifies_and_its_secret_is_deleted(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", CHAT, openai_chat(json.dumps({"title": "T", "points": ["a", "b", "c"]})))
    upstream.route("POST", HOOK, Response(200, "ok"))
    hooked = keyed(settings, KEY_NEW)
    body = {**QUICK, "webhook_url": upstream.url + HOOK, "webhook_secret": SECRET}
    async with harness.running_worker(temporal_client, hooked, engine):
        async with gateway(hooked, engine=engine, temporal_client=temporal_client) as api:
            job_id = (await api.post("/api/v1/jobs", json=body)).json()["job_id"]
            job = await poll(api, job_id)
            delivery = await wait_for_delivery(temporal_client, job_id)
            # A rerun after the delivery ended: it runs, with no webhook (no secret to sign).
            rerun = await api.post(f"/api/v1/jobs/{job_id}/rerun")
            assert rerun.status_code == 202, rerun.text
            rerun_id = rerun.json()["job_id"]
            second = await poll(api, rerun_id)
        rerun_run = (await temporal_client.get_workflow_handle(rerun_id).describe()).run_id
        with pytest.raises(RPCError) as no_child:
            await temporal_client.get_workflow_handle(f"{rerun_id}:webhook:{rerun_run}").describe()

    assert job["status"] == "completed" and delivery.delivered
    [request] = upstream.requests_to(HOOK)
    payload = verify_signed(request, SECRET)
    assert payload["job_id"] == job_id and payload["event"] == "workflow.completed"
    assert stored(engine, job_id) is None
    assert second["status"] == "completed" and stored(engine, rerun_id) is None
    assert no_child.value.status == RPCStatusCode.NOT_FOUND


# --- histories replayed by tests/test_replay.py --------------------------------------------------
# webhook_delivery_job_secret.json is a job-secret delivery recorded before forget_job_secret
# existed: it keeps the workflow.patched guard honest, so it is never re-recorded.


@pytest.mark.skipif(
    not os.environ.get("LLMFLOW_RECORD_HISTORIES"),
    reason="set LLMFLOW_RECORD_HISTORIES=1 to re-record",
)
async def test_record_forgetting_delivery_history(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", "/hooks/replay", Response(200, "ok"))
    hooked = keyed(settings, KEY_NEW)
    job_id = f"replay-{uuid.uuid4()}"
    store(engine, job_id, box(KEY_NEW).seal(SECRET))
    async with harness.running_worker(temporal_client, hooked, engine):
        result = await deliver(
            temporal_client, hooked, job_id, upstream.url + "/hooks/replay", "workflow.completed"
        )
        handle = temporal_client.get_workflow_handle(f"{job_id}:webhook:test:workflow.completed")
        history = await handle.fetch_history()
    assert result.delivered and stored(engine, job_id) is None
    (HISTORIES / "webhook_delivery_forget.json").write_text(history.to_json() + "\n")
