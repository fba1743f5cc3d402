"""Inbound webhooks: Strapi and declared sources → triggers.json → workflows.

The real gateway serves the routes; signatures are computed over the exact bytes sent, and
"nothing started" is checked where it matters: the mirror row and Temporal, under the job id a
delivery of that body would have had.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.inbound_service import RejectionAlerts, event_job_id
from api.main import create_app
from core.db import get_job
from core.models import Alert
from core.settings import Settings
from core.webhook_signing import sign_hex
from tests import harness
from tests.api_server import serve
from tests.test_api_jobs import poll
from workflow_defs.catalog import load_catalog
from workflow_defs.triggers import TRIGGERS_FILE, TriggerConfigError, load_triggers

SHIPPED_DEFS = Path(__file__).resolve().parents[1] / "workflow_defs"
SECRET = "strapi-test-secret-4b1d07"
TOKEN = "strapi-test-token-9c2e55"
SHOP_SECRET = "shop-test-secret-77aa01"
STRAPI_URL = "/api/v1/webhooks/strapi"

TRIGGERS: dict[str, Any] = {
    "sources": {
        "shop": {"secret_env": "SHOP_WEBHOOK_SECRET"},
        "crm": {"token_env": "CRM_WEBHOOK_TOKEN_UNSET_IN_TESTS"},
    },
    "triggers": [
        {
            "name": "explain-article",
            "source": "strapi",
            "event": "entry.publish",
            "model": "article",
            "workflow": "quickstart",
            "input": {"topic": "${entry.title}", "audience": "readers of ${model} (${uid})"},
        },
        {
            "name": "any-model-created",
            "source": "strapi",
            "event": "entry.create",
            "model": "*",
            "workflow": "quickstart",
            "input": {"topic": "new ${model}: ${entry.name}"},
        },
        {
            "name": "views-as-topic",
            "source": "strapi",
            "event": "entry.update",
            "model": "article",
            "workflow": "quickstart",
            "input": {"topic": "${entry.views}"},
        },
        {
            "name": "shop-order",
            "source": "shop",
            "event": "order.paid",
            "workflow": "quickstart",
            "input": {"topic": "order ${order.id}"},
        },
    ],
}


def write_defs(directory: Path, triggers: dict[str, Any]) -> Path:
    """The shipped definitions plus a test triggers.json, as a WORKFLOW_DEFS_DIR."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in SHIPPED_DEFS.glob("*.json"):
        if path.name != TRIGGERS_FILE:
            shutil.copy(path, directory / path.name)
    (directory / TRIGGERS_FILE).write_text(json.dumps(triggers), encoding="utf-8")
    return directory


@pytest.fixture
def hook_settings(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("SHOP_WEBHOOK_SECRET", SHOP_SECRET)
    monkeypatch.delenv("CRM_WEBHOOK_TOKEN_UNSET_IN_TESTS", raising=False)
    return settings.model_copy(
        update={
            "workflow_defs_dir": write_defs(tmp_path / "defs", TRIGGERS),
            "strapi_webhook_secret": SECRET,
            "strapi_webhook_token": TOKEN,
            "llm_default_provider": "mock",
        }
    )


def build_app(settings: Settings, engine: Engine, temporal_client: Client | None) -> FastAPI:
    return create_app(settings, engine=engine, temporal_client=temporal_client)


@pytest.fixture
async def hooks(
    hook_settings: Settings, engine: Engine, temporal_client: Client
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    app = build_app(hook_settings, engine, temporal_client)
    async with serve(app) as client:
        yield client, app


def strapi_body(event: str, model: str, **entry: Any) -> bytes:
    # A fresh entry id per call: the same bytes would (rightly) dedupe across tests.
    return json.dumps(
        {
            "event": event,
            "createdAt": "2026-01-05T10:00:00.000Z",
            "model": model,
            "uid": f"api::{model}.{model}",
            "entry": {"id": uuid.uuid4().hex, **entry},
        }
    ).encode()


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Webhook-Signature": sign_hex(secret, body)}


def trigger(app: FastAPI, name: str) -> Any:
    return next(t for t in app.state.inbound.triggers.triggers if t.name == name)


async def assert_not_started(engine: Engine, client: Client, job_id: str) -> None:
    assert get_job(engine, job_id) is None
    with pytest.raises(RPCError) as err:
        await client.get_workflow_handle(job_id).describe()
    assert err.value.status == RPCStatusCode.NOT_FOUND


def alerts_for(engine: Engine, body: bytes) -> list[Alert]:
    digest = hashlib.sha256(body).hexdigest()
    with Session(engine) as session:
        rows = session.exec(select(Alert).where(Alert.source == "inbound_webhook")).all()
    return [a for a in rows if (a.details or {}).get("body_sha256") == digest]


async def test_signed_event_starts_the_mapped_workflow_and_it_runs(
    hooks: tuple[httpx.AsyncClient, FastAPI],
    hook_settings: Settings,
    engine: Engine,
    temporal_client: Client,
) -> None:
    api, app = hooks
    body = strapi_body("entry.publish", "article", title="Durable execution")
    async with harness.running_worker(temporal_client, hook_settings, engine):
        resp = await api.post(STRAPI_URL, content=body, headers=signed(body))
        assert resp.status_code == 202, resp.text
        started = resp.json()["started"]
        assert resp.json()["accepted"] is True and len(started) == 1
        assert started[0]["workflow_name"] == "quickstart" and started[0]["replayed"] is False
        assert started[0]["trigger"] == "explain-article"
        job_id = started[0]["job_id"]
        assert job_id == event_job_id("strapi", trigger(app, "explain-article"), body)
        done = await poll(api, job_id)
    assert done["status"] == "completed", done
    assert done["output"]["topic"] == "Durable execution"
    row = get_job(engine, job_id)
    assert row is not None
    assert row.input_data == {
        "topic": "Durable execution",
        "audience": "readers of article (api::article.article)",
    }


async def test_bearer_token_is_accepted_without_an_api_key(
    settings: Settings, hook_settings: Settings, engine: Engine, temporal_client: Client
) -> None:
    keyed = hook_settings.model_copy(update={"api_keys": ["gateway-key-123456"]})
    async with serve(build_app(keyed, engine, temporal_client)) as api:
        body = strapi_body("entry.publish", "article", title="Tokens")
        resp = await api.post(
            STRAPI_URL,
            content=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
        )
        jobs_without_key = await api.get("/api/v1/jobs")
    assert resp.status_code == 202, resp.text
    assert len(resp.json()["started"]) == 1
    assert jobs_without_key.status_code == 401  # the API-key guard is still on elsewhere


async def test_bad_signature_is_401_with_an_alert_and_nothing_started(
    hooks: tuple[httpx.AsyncClient, FastAPI], engine: Engine, temporal_client: Client
) -> None:
    api, app = hooks
    body = strapi_body("entry.publish", "article", title="Forged")
    forged = sign_hex("not-the-secret", body)
    resp = await api.post(
        STRAPI_URL, content=body, headers={**signed(body), "X-Webhook-Signature": forged}
    )
    # A valid signature over other bytes doesn't cover these.
    tampered = body.replace(b"Forged", b"Forgex")
    other = await api.post(STRAPI_URL, content=tampered, headers=signed(body))
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
    assert other.status_code == 401
    await assert_not_started(
        engine, temporal_client, event_job_id("strapi", trigger(app, "explain-article"), body)
    )
    await app.state.inbound.rejections.flush(engine)
    alerts = alerts_for(engine, body)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.level == "WARNING" and "bad signature" in alert.message
    stored = json.dumps([alert.message, alert.details])
    assert forged.removeprefix("sha256=") not in stored and SECRET not in stored
    # Same source, same reason, same window: the second rejection is counted in the first row.
    assert alerts_for(engine, tampered) == []
    assert alert.details is not None and alert.details["count"] == 2


async def test_bad_token_alerts_but_missing_auth_is_only_401(
    hooks: tuple[httpx.AsyncClient, FastAPI], engine: Engine
) -> None:
    api, _ = hooks
    wrong_body = strapi_body("entry.publish", "article", title="Wrong token")
    wrong = await api.post(
        STRAPI_URL,
        content=wrong_body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer guessed-token-0001"},
    )
    bare_body = strapi_body("entry.publish", "article", title="No auth")
    bare = await api.post(STRAPI_URL, content=bare_body)
    assert wrong.status_code == 401 and bare.status_code == 401
    [alert] = alerts_for(engine, wrong_body)
    assert "bad bearer token" in alert.message
    assert "guessed-token-0001" not in json.dumps([alert.message, alert.details])
    assert alerts_for(engine, bare_body) == []


def rejection_rows(engine: Engine, after_id: int) -> list[Alert]:
    with Session(engine) as session:
        rows = session.exec(
            select(Alert)
            .where(Alert.source == "inbound_webhook")
            .where(Alert.id > after_id)  # type: ignore[operator]
            .order_by(Alert.id)  # type: ignore[arg-type]
        ).all()
    return [r for r in rows if "rejected inbound webhook" in r.message]


def last_alert_id(engine: Engine) -> int:
    with Session(engine) as session:
        ids = session.exec(select(Alert.id)).all()
    return max((i for i in ids if i is not None), default=0)


async def test_a_flood_of_forged_requests_makes_one_alert_row_per_source_and_reason(
    hooks: tuple[httpx.AsyncClient, FastAPI], engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone can add an X-Webhook-Signature header: 500 forged posts used to store 500 rows."""
    api, app = hooks
    rejections = app.state.inbound.rejections
    rejections.flush_seconds = 0.2
    before = last_alert_id(engine)
    forged = {"Content-Type": "application/json", "X-Webhook-Signature": "sha256=" + "0" * 64}

    async def forge(i: int) -> int:
        body = strapi_body("entry.publish", "article", title=f"Forged {i}")
        return (await api.post(STRAPI_URL, content=body, headers=forged)).status_code

    caplog.set_level("WARNING", logger="api.inbound_service")
    statuses: list[int] = []
    for batch in range(10):  # concurrent requests, 50 at a time
        statuses += await asyncio.gather(*(forge(batch * 50 + i) for i in range(50)))
    assert statuses == [401] * 500

    # The count reaches the row by itself (a delayed write), without waiting out the window.
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        rows = rejection_rows(engine, before)
        if (rows and (rows[0].details or {}).get("count") == 500) or (
            asyncio.get_running_loop().time() > deadline
        ):
            break
        await asyncio.sleep(0.1)
    [row] = rows
    assert row.level == "WARNING" and (row.details or {})["source"] == "strapi"
    assert (row.details or {})["reason"] == "bad signature"
    assert (row.details or {})["count"] == 500 and (row.details or {})["window_seconds"] == 60
    assert "bad signature (500 rejected within 60 s)" in row.message
    # Every rejection is still logged, one line each.
    logged = [r for r in caplog.records if "rejected: bad signature" in r.getMessage()]
    assert len(logged) == 500

    # Another source, and another reason for the same source, each get their own row.
    order = json.dumps({"event": "order.paid", "order": {"id": "o-1"}}).encode()
    shop = await api.post("/api/v1/webhooks/shop", content=order, headers=forged)
    token_body = strapi_body("entry.publish", "article", title="Wrong token")
    wrong_token = {"Content-Type": "application/json", "Authorization": "Bearer guessed-000001"}
    tokens = [
        (await api.post(STRAPI_URL, content=token_body, headers=wrong_token)).status_code
        for _ in range(3)
    ]
    assert shop.status_code == 401 and tokens == [401] * 3
    await rejections.flush(engine)
    rows = rejection_rows(engine, before)
    by_key = {((r.details or {})["source"], (r.details or {})["reason"]): r for r in rows}
    assert len(rows) == 3 and set(by_key) == {
        ("strapi", "bad signature"),
        ("shop", "bad signature"),
        ("strapi", "bad bearer token"),
    }
    assert (by_key[("shop", "bad signature")].details or {})["count"] == 1
    assert (by_key[("strapi", "bad bearer token")].details or {})["count"] == 3
    assert "guessed-000001" not in json.dumps([[r.message, r.details] for r in rows])


async def test_rejections_after_the_window_start_a_new_row(engine: Engine) -> None:
    now = [1000.0]
    alerts = RejectionAlerts(window_seconds=60, flush_seconds=3600, clock=lambda: now[0])
    before = last_alert_id(engine)
    source = f"window-test-{uuid.uuid4().hex[:8]}"

    async def reject(secret: str = "") -> None:
        details = {"source": source, "reason": "bad signature", "client": "10.0.0.9"}
        await alerts.record(engine, source, "bad signature", details, secrets=[secret])

    await asyncio.gather(*(reject() for _ in range(5)))  # concurrent: one row, count 5
    now[0] += 59.9
    await reject()
    now[0] += 0.2  # 60.1 s after the first: a new window
    await reject()
    await alerts.flush(engine)
    rows = [r for r in rejection_rows(engine, before) if (r.details or {}).get("source") == source]
    assert [(r.details or {})["count"] for r in rows] == [6, 1]
    assert rows[0].message.endswith("(6 rejected within 60 s)")
    assert rows[1].message == f"rejected inbound webhook for source {source!r}: bad signature"


async def test_unconfigured_source_is_503_even_with_a_signature(
    settings: Settings, hook_settings: Settings, engine: Engine, temporal_client: Client
) -> None:
    bare = hook_settings.model_copy(
        update={"strapi_webhook_secret": None, "strapi_webhook_token": ""}
    )
    async with serve(build_app(bare, engine, temporal_client)) as api:
        body = strapi_body("entry.publish", "article", title="Unconfigured")
        strapi = await api.post(STRAPI_URL, content=body, headers=signed(body))
        crm = await api.post(
            "/api/v1/webhooks/crm", json={"event": "x"}, headers={"Authorization": "Bearer x"}
        )
    assert strapi.status_code == 503 and "not configured" in strapi.json()["detail"]
    assert "STRAPI_WEBHOOK_SECRET" in strapi.json()["detail"]
    assert crm.status_code == 503 and "not configured" in crm.json()["detail"]


async def test_unmatched_event_is_acknowledged_and_starts_nothing(
    hooks: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    api, _ = hooks
    for body in (
        strapi_body("entry.delete", "article", title="Gone"),
        strapi_body("entry.publish", "page", title="Not an article"),
    ):
        resp = await api.post(STRAPI_URL, content=body, headers=signed(body))
        assert resp.status_code == 202, resp.text
        assert resp.json() == {"accepted": True, "started": []}


async def test_redelivery_returns_the_same_job_and_starts_one_workflow(
    hooks: tuple[httpx.AsyncClient, FastAPI], temporal_client: Client
) -> None:
    api, _ = hooks
    body = strapi_body("entry.publish", "article", title="Delivered twice")
    first = await api.post(STRAPI_URL, content=body, headers=signed(body))
    again, concurrent = await asyncio.gather(
        api.post(STRAPI_URL, content=body, headers=signed(body)),
        api.post(STRAPI_URL, content=body, headers=signed(body)),
    )
    assert first.status_code == again.status_code == concurrent.status_code == 202
    job_id = first.json()["started"][0]["job_id"]
    for resp in (again, concurrent):
        [started] = resp.json()["started"]
        assert started["job_id"] == job_id and started["replayed"] is True
    # A different body (another entry) is another event, hence another job.
    other = strapi_body("entry.publish", "article", title="Delivered twice")
    other_resp = await api.post(STRAPI_URL, content=other, headers=signed(other))
    assert other_resp.json()["started"][0]["job_id"] != job_id
    runs = [w async for w in temporal_client.list_workflows(f'WorkflowId = "{job_id}"')]
    assert len(runs) == 1


async def test_wildcard_model_maps_entry_fields(
    hooks: tuple[httpx.AsyncClient, FastAPI], engine: Engine
) -> None:
    api, _ = hooks
    ids = []
    for model, name in (("product", "Kettle"), ("author", "Ada")):
        body = strapi_body("entry.create", model, name=name)
        resp = await api.post(STRAPI_URL, content=body, headers=signed(body))
        assert resp.status_code == 202, resp.text
        [started] = resp.json()["started"]
        assert started["trigger"] == "any-model-created"
        ids.append(started["job_id"])
    rows = [get_job(engine, job_id) for job_id in ids]
    topics = [(r.input_data or {}).get("topic") for r in rows if r]
    assert topics == ["new product: Kettle", "new author: Ada"]


async def test_invalid_mapped_input_is_422_with_an_alert_and_nothing_started(
    hooks: tuple[httpx.AsyncClient, FastAPI], engine: Engine, temporal_client: Client
) -> None:
    api, app = hooks
    wrong_type = strapi_body("entry.update", "article", views=42)
    missing = strapi_body("entry.publish", "article")  # no title → required topic is null
    resp = await api.post(STRAPI_URL, content=wrong_type, headers=signed(wrong_type))
    resp_missing = await api.post(STRAPI_URL, content=missing, headers=signed(missing))
    assert resp.status_code == 422, resp.text
    [problem] = resp.json()["detail"]
    assert problem["loc"] == ["trigger", "views-as-topic", "input", "topic"]
    assert "expected string" in problem["msg"]
    assert resp_missing.status_code == 422
    [problem] = resp_missing.json()["detail"]
    assert problem["msg"] == "field required"
    assert "${entry.title} is not set; used null" in problem["ctx"]["warnings"]
    await assert_not_started(
        engine, temporal_client, event_job_id("strapi", trigger(app, "views-as-topic"), wrong_type)
    )
    with Session(engine) as session:
        rows = session.exec(select(Alert).where(Alert.source == "inbound_webhook")).all()
    mine = [a for a in rows if "views-as-topic" in json.dumps(a.details)]
    assert mine and mine[-1].level == "WARNING" and "invalid workflow input" in mine[-1].message


async def test_declared_source_uses_its_own_secret_and_unknown_source_is_404(
    hooks: tuple[httpx.AsyncClient, FastAPI], engine: Engine
) -> None:
    api, _ = hooks
    body = json.dumps({"event": "order.paid", "order": {"id": uuid.uuid4().hex[:8]}}).encode()
    ok = await api.post("/api/v1/webhooks/shop", content=body, headers=signed(body, SHOP_SECRET))
    strapi_secret = await api.post("/api/v1/webhooks/shop", content=body, headers=signed(body))
    unknown = await api.post("/api/v1/webhooks/nope", content=body, headers=signed(body))
    assert ok.status_code == 202, ok.text
    [started] = ok.json()["started"]
    row = get_job(engine, started["job_id"])
    assert row is not None and str((row.input_data or {}).get("topic")).startswith("order ")
    assert strapi_secret.status_code == 401
    assert unknown.status_code == 404


async def test_malformed_or_non_object_body(hooks: tuple[httpx.AsyncClient, FastAPI]) -> None:
    api, _ = hooks
    broken = b'{"event": "entry.publish", '
    listed = b'["entry.publish"]'
    no_event = b'{"model": "article"}'
    resp = await api.post(STRAPI_URL, content=broken, headers=signed(broken))
    resp_list = await api.post(STRAPI_URL, content=listed, headers=signed(listed))
    resp_no_event = await api.post(STRAPI_URL, content=no_event, headers=signed(no_event))
    unsigned_broken = await api.post(STRAPI_URL, content=broken)
    assert resp.status_code == 400 and resp.json()["detail"][0]["type"] == "json_invalid"
    assert resp_list.status_code == 422
    assert resp_no_event.status_code == 422
    assert resp_no_event.json()["detail"][0]["loc"] == ["body", "event"]
    assert unsigned_broken.status_code == 401  # authentication comes before parsing


async def test_temporal_unreachable_is_503_so_the_sender_retries(
    hook_settings: Settings, engine: Engine
) -> None:
    down = hook_settings.model_copy(update={"temporal_address": "127.0.0.1:1"})
    app = build_app(down, engine, None)
    async with serve(app) as api:
        body = strapi_body("entry.publish", "article", title="Temporal down")
        resp = await api.post(STRAPI_URL, content=body, headers=signed(body))
    assert resp.status_code == 503, resp.text
    job_id = event_job_id("strapi", trigger(app, "explain-article"), body)
    assert get_job(engine, job_id) is None  # not left half-accepted in the mirror


def test_openapi_documents_the_webhook_routes_without_api_key_security(
    hook_settings: Settings, engine: Engine
) -> None:
    spec = build_app(hook_settings, engine, None).openapi()
    for path in ("/api/v1/webhooks/strapi", "/api/v1/webhooks/{source}"):
        post = spec["paths"][path]["post"]
        assert {"202", "401", "422", "503"} <= set(post["responses"])
        assert "security" not in post
        assert any(p["name"] == "X-Webhook-Signature" for p in post["parameters"])
    body = spec["paths"]["/api/v1/webhooks/strapi"]["post"]["requestBody"]
    assert "entry" in body["content"]["application/json"]["schema"]["properties"]


# ---- triggers.json validation ---------------------------------------------------------------


def quick(**overrides: Any) -> dict[str, Any]:
    base = {
        "source": "strapi",
        "event": "entry.publish",
        "model": "article",
        "workflow": "quickstart",
        "input": {"topic": "${entry.title}"},
    }
    return {**base, **overrides}


@pytest.mark.parametrize(
    ("triggers", "expected"),
    [
        ({"triggers": [quick(workflow="nope")]}, "$.triggers[0].workflow: unknown workflow 'nope'"),
        (
            {"triggers": [quick(), quick(input={"topic": "${entry..title}"})]},
            "$.triggers[1].input.topic: bad reference path",
        ),
        ({"triggers": [quick(version="9.9.9")]}, "$.triggers[0].version: quickstart has no"),
        (
            {"triggers": [quick(input={"topic": "${input.title}"})]},
            "$.triggers[0].input.topic: ${input.title}: a Strapi event has no 'input'",
        ),
        ({"triggers": [quick(input={})]}, "$.triggers[0].input: quickstart 1.0.0 requires"),
        ({"triggers": [quick(source="github")]}, "$.triggers[0].source: unknown source"),
        ({"triggers": [quick(event="entry.*")]}, "$.triggers[0].event: 'entry.*': use '*'"),
        ({"triggers": [quick(), quick()]}, "$.triggers[1]: duplicates $.triggers[0]"),
        ({"triggers": [quick(colour="red")]}, "$.triggers[0].colour: Extra inputs"),
        ({"sources": {"gh": {}}}, "$.sources.gh: Value error, give secret_env"),
        ({"sources": {"strapi": {"secret_env": "X"}}}, "$.sources.strapi: strapi is built in"),
    ],
)
def test_invalid_triggers_name_the_file_and_path(
    tmp_path: Path, settings: Settings, triggers: dict[str, Any], expected: str
) -> None:
    path = tmp_path / TRIGGERS_FILE
    path.write_text(json.dumps(triggers), encoding="utf-8")
    with pytest.raises(TriggerConfigError) as err:
        load_triggers(path, load_catalog(settings).definitions)
    assert f"triggers.json: {expected}" in str(err.value)


def test_unparseable_triggers_file_names_line_and_column(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / TRIGGERS_FILE
    path.write_text('{"triggers": [\n  {"source": }\n]}', encoding="utf-8")
    with pytest.raises(TriggerConfigError, match=r"triggers.json: \$: invalid JSON at line 2"):
        load_triggers(path, load_catalog(settings).definitions)


def test_shipped_triggers_load_and_a_missing_file_means_no_triggers(
    tmp_path: Path, settings: Settings
) -> None:
    registry = load_catalog(settings).definitions
    shipped = load_triggers(SHIPPED_DEFS / TRIGGERS_FILE, registry)
    assert shipped.triggers and all(registry.get(t.workflow, t.version) for t in shipped.triggers)
    assert shipped.matching("strapi", "entry.publish", "article")
    assert load_triggers(tmp_path / TRIGGERS_FILE, registry).triggers == []


def test_gateway_refuses_to_start_on_invalid_triggers(tmp_path: Path, settings: Settings) -> None:
    bad = settings.model_copy(
        update={"workflow_defs_dir": write_defs(tmp_path, {"triggers": [quick(workflow="x")]})}
    )
    with pytest.raises(TriggerConfigError, match=r"triggers.json: \$.triggers\[0\].workflow"):
        create_app(bad)
