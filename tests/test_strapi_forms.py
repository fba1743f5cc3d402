"""Strapi webhooks in every form their senders use, against the shipped triggers.json
(entry.publish of an article → quickstart).

Senders: Strapi itself (v4 and v5 bodies, `model` + `uid`, and static headers such as
`Authorization: Bearer …` set in its admin panel) and the integration layer's clients (a bare hex
HMAC-SHA256 in `X-Strapi-Signature`, the event and content type in `X-Strapi-Event` /
`X-Strapi-Entity` headers or the body's `event` / `entity`). Every request goes through the real
gateway; accepted ones run to completion on a real worker (LLM on the mock provider).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from temporalio.client import Client

from api.inbound_service import (
    ParsedEvent,
    SourceCredentials,
    check_credentials,
    event_job_id,
    parse_body,
)
from api.main import create_app
from core.db import get_job
from core.settings import Settings
from tests import harness
from tests.api_server import serve
from tests.test_api_jobs import poll
from tests.test_inbound_webhooks import assert_not_started

SHIPPED_DEFS = Path(__file__).resolve().parents[1] / "workflow_defs"
SECRET = "strapi-forms-secret-5e1f0a"
TOKEN = "strapi-forms-token-c3d9b2"
URL = "/api/v1/webhooks/strapi"
JSON = {"Content-Type": "application/json"}


def hex_hmac(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def v4_body(title: str, **extra: Any) -> dict[str, Any]:
    """Strapi v4: `entry` holds the entry's id and fields."""
    return {
        "event": "entry.publish",
        "createdAt": "2026-01-05T10:00:00.000Z",
        "model": "article",
        "uid": "api::article.article",
        "entry": {
            "id": uuid.uuid4().int % 10**9,  # fresh bodies: the same bytes would dedupe
            "title": title,
            "createdAt": "2026-01-05T09:58:00.000Z",
            "updatedAt": "2026-01-05T10:00:00.000Z",
            "publishedAt": "2026-01-05T10:00:00.000Z",
        },
        **extra,
    }


def v5_body(title: str, **extra: Any) -> dict[str, Any]:
    """Strapi v5: the entry carries its `documentId` too, fields flat beside it."""
    body = v4_body(title, **extra)
    body["entry"] = {
        "id": body["entry"]["id"],
        "documentId": uuid.uuid4().hex[:24],
        "title": title,
        "slug": "durable-execution",
        "createdAt": "2026-01-05T09:58:00.000Z",
        "updatedAt": "2026-01-05T10:00:00.000Z",
        "publishedAt": "2026-01-05T10:00:00.000Z",
        "locale": None,
    }
    return body


BODIES = {"v4": v4_body, "v5": v5_body}


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def without(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in keys}


def form(name: str, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers a sender using `name` posts for the event `body`."""
    if name == "x-strapi-signature":  # the integration layer's clients: bare hex
        raw = encode(body)
        return raw, {**JSON, "X-Strapi-Signature": hex_hmac(raw)}
    if name == "x-webhook-signature":
        raw = encode(body)
        return raw, {**JSON, "X-Webhook-Signature": "sha256=" + hex_hmac(raw)}
    if name == "bearer":  # Strapi's admin panel: a static header
        return encode(body), {**JSON, "Authorization": f"Bearer {TOKEN}"}
    if name == "event-and-entity-headers":
        raw = encode(without(body, "event", "model"))
        return raw, {
            **JSON,
            "X-Strapi-Signature": hex_hmac(raw),
            "X-Strapi-Event": body["event"],
            "X-Strapi-Entity": body["model"],
        }
    if name == "entity-in-body":
        raw = encode({**without(body, "model"), "entity": body["model"]})
        return raw, {**JSON, "X-Strapi-Signature": hex_hmac(raw)}
    raise AssertionError(name)


FORMS = [
    "x-strapi-signature",
    "x-webhook-signature",
    "bearer",
    "event-and-entity-headers",
    "entity-in-body",
]


@pytest.fixture
def strapi_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "workflow_defs_dir": SHIPPED_DEFS,
            "strapi_webhook_secret": SECRET,
            "strapi_webhook_token": TOKEN,
            "llm_default_provider": "mock",
        }
    )


@pytest.fixture
async def api(
    strapi_settings: Settings, engine: Engine, temporal_client: Client
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    app = create_app(strapi_settings, engine=engine, temporal_client=temporal_client)
    async with serve(app) as client:
        yield client, app


def article_trigger(app: FastAPI) -> Any:
    return next(
        t
        for t in app.state.inbound.triggers.triggers
        if (t.source, t.event, t.model, t.workflow)
        == ("strapi", "entry.publish", "article", "quickstart")
    )


@pytest.mark.parametrize("strapi", sorted(BODIES))
async def test_every_form_starts_the_article_trigger_and_the_job_completes(
    strapi: str,
    api: tuple[httpx.AsyncClient, FastAPI],
    strapi_settings: Settings,
    engine: Engine,
    temporal_client: Client,
) -> None:
    client, app = api
    trigger = article_trigger(app)
    sent: dict[str, tuple[bytes, str]] = {}
    async with harness.running_worker(temporal_client, strapi_settings, engine):
        for name in FORMS:
            title = f"Durable execution ({strapi}, {name}, {uuid.uuid4().hex[:6]})"
            raw, headers = form(name, BODIES[strapi](title))
            resp = await client.post(URL, content=raw, headers=headers)
            assert resp.status_code == 202, (name, resp.text)
            [job] = [s for s in resp.json()["started"] if s["trigger"] == trigger.label]
            assert job["workflow_name"] == "quickstart" and job["replayed"] is False, name
            assert job["job_id"] == event_job_id("strapi", trigger, raw)
            sent[name] = (raw, title)
            # A redelivery of the same bytes, authenticated another way, finds the same job.
            resent = {k: v for k, v in headers.items() if not k.endswith("Signature")}
            again = await client.post(
                URL, content=raw, headers={**resent, "Authorization": f"Bearer {TOKEN}"}
            )
            assert again.status_code == 202, again.text
            [replayed] = [s for s in again.json()["started"] if s["trigger"] == trigger.label]
            assert replayed["job_id"] == job["job_id"] and replayed["replayed"] is True
        job_ids = {n: event_job_id("strapi", trigger, raw) for n, (raw, _) in sent.items()}
        done = await asyncio.gather(*(poll(client, job_id, 60) for job_id in job_ids.values()))

    for (name, (_, title)), job in zip(sent.items(), done, strict=True):
        assert job["status"] == "completed", (name, job)
        row = get_job(engine, job["job_id"])
        assert row is not None and row.input_data is not None, name
        assert row.input_data["topic"] == title, name  # ${entry.title}, v4 and v5 alike


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"X-Strapi-Signature": hex_hmac(b"other bytes")}, "X-Strapi-Signature does not match"),
        (
            {"X-Webhook-Signature": "sha256=" + hex_hmac(b"{}", "not-the-secret")},
            "X-Webhook-Signature does not match",
        ),
        ({"X-Strapi-Signature": "zz-not-hex"}, "X-Strapi-Signature does not match"),
        ({"Authorization": "Bearer guessed-token-0002"}, "bearer token does not match"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "not 'Bearer <token>'"),
        ({}, "no credentials: send X-Webhook-Signature or X-Strapi-Signature"),
    ],
)
async def test_a_wrong_or_missing_credential_is_401_naming_it_and_starts_nothing(
    headers: dict[str, str],
    named: str,
    api: tuple[httpx.AsyncClient, FastAPI],
    engine: Engine,
    temporal_client: Client,
) -> None:
    client, app = api
    raw = encode(v5_body(f"Forged {uuid.uuid4().hex[:6]}"))
    resp = await client.post(URL, content=raw, headers={**JSON, **headers})
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"] == "Bearer"
    detail = resp.json()["detail"]
    assert named in detail
    for secret in (SECRET, TOKEN, *headers.values()):
        assert secret not in detail
    await assert_not_started(
        engine, temporal_client, event_job_id("strapi", article_trigger(app), raw)
    )


async def test_a_wrong_signature_beside_a_right_one_still_passes(
    api: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    client, _ = api
    raw = encode(v4_body(f"Two signatures {uuid.uuid4().hex[:6]}"))
    resp = await client.post(
        URL,
        content=raw,
        headers={
            **JSON,
            "X-Webhook-Signature": "sha256=" + "0" * 64,
            "X-Strapi-Signature": hex_hmac(raw),
        },
    )
    assert resp.status_code == 202, resp.text


async def test_missing_event_or_content_type_in_body_and_headers_is_422_naming_the_field(
    api: tuple[httpx.AsyncClient, FastAPI], engine: Engine, temporal_client: Client
) -> None:
    client, app = api

    async def post(body: dict[str, Any], **headers: str) -> httpx.Response:
        raw = encode(body)
        return await client.post(
            URL, content=raw, headers={**JSON, "X-Strapi-Signature": hex_hmac(raw), **headers}
        )

    no_event = without(v4_body("No event"), "event")
    resp = await post(no_event)
    assert resp.status_code == 422, resp.text
    [problem] = resp.json()["detail"]
    assert problem["loc"] == ["body", "event"]
    assert "X-Strapi-Event" in problem["msg"]

    no_model = without(v5_body("No model"), "model")
    resp = await post(no_model)
    assert resp.status_code == 422, resp.text
    [problem] = resp.json()["detail"]
    assert problem["loc"] == ["body", "model"]
    assert "'entity'" in problem["msg"] and "X-Strapi-Entity" in problem["msg"]
    assert "entry.publish" in problem["msg"]
    await assert_not_started(
        engine, temporal_client, event_job_id("strapi", article_trigger(app), encode(no_model))
    )

    # Blank values count as missing; the uid alone is not a content type.
    resp = await post(
        {**without(v4_body("Blank"), "model", "event"), "event": " "},
        **{"X-Strapi-Event": "entry.publish", "X-Strapi-Entity": ""},
    )
    assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["body", "model"]

    # Media events carry no content type in Strapi: acknowledged, nothing matches.
    media = {
        "event": "media.create",
        "createdAt": "2026-01-05T10:00:00.000Z",
        "media": {"id": 3, "name": "cover.png", "mime": "image/png"},
    }
    resp = await post(media)
    assert resp.status_code == 202 and resp.json()["started"] == [], resp.text


async def test_the_body_wins_over_the_headers(api: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = api
    body = v4_body(f"Updated {uuid.uuid4().hex[:6]}")
    body["event"] = "entry.update"  # no shipped trigger for updates
    raw = encode(body)
    resp = await client.post(
        URL,
        content=raw,
        headers={
            **JSON,
            "X-Strapi-Signature": hex_hmac(raw),
            "X-Strapi-Event": "entry.publish",
            "X-Strapi-Entity": "page",
        },
    )
    assert resp.status_code == 202 and resp.json()["started"] == [], resp.text


# ---- pure units ----------------------------------------------------------------------------


def test_parse_body_reads_synonyms_and_headers_into_one_namespace() -> None:
    raw = encode({"entity": "article", "entry": {"title": "T"}})
    parsed = parse_body(
        raw, source="strapi", headers={"X-Strapi-Event": "entry.publish", "X-Webhook-Event": None}
    )
    assert parsed == ParsedEvent(
        {"entity": "article", "entry": {"title": "T"}}, "entry.publish", "article"
    )
    namespace = parsed.namespace()
    assert namespace["event"] == "entry.publish"
    assert namespace["model"] == namespace["entity"] == "article"
    from_header = parse_body(
        encode({"event": "entry.create"}), source="strapi", headers={"X-Strapi-Entity": "page"}
    )
    assert from_header.model == "page" and from_header.namespace()["model"] == "page"
    # Other sources: no content type needed, the X-Webhook-Event header names the event.
    other = parse_body(b"{}", source="shop", headers={"X-Webhook-Event": "order.paid"})
    assert (other.event, other.model) == ("order.paid", None)


def test_check_credentials_accepts_any_form_and_names_what_failed() -> None:
    creds = SourceCredentials(secret=SECRET, token=TOKEN)
    body = b'{"event":"entry.publish"}'
    names = ("X-Webhook-Signature", "X-Strapi-Signature")

    def check(sig: str | None = None, strapi_sig: str | None = None, auth: str | None = None):
        return check_credentials(
            creds, body, dict(zip(names, (sig, strapi_sig), strict=True)), auth
        )

    assert check(strapi_sig=hex_hmac(body)) is None
    assert check(strapi_sig=hex_hmac(body).upper()) is None
    assert check(sig="sha256=" + hex_hmac(body)) is None
    assert check(sig=hex_hmac(body)) is None  # bare hex there too
    assert check(auth=f"bearer {TOKEN}") is None
    bad = check(sig="sha256=" + "0" * 64, strapi_sig="1" * 64)
    assert bad is not None and bad.reason == "bad signature"
    assert bad.public == (
        "X-Webhook-Signature and X-Strapi-Signature do not match the HMAC-SHA256 of the body"
    )
    unconfigured = check_credentials(
        SourceCredentials(token=TOKEN), body, {"X-Strapi-Signature": hex_hmac(body)}, None
    )
    assert unconfigured is not None
    # The log says the secret is missing; the answer only says the signature didn't match.
    assert unconfigured.reason == "signature sent but no secret is configured"
    assert unconfigured.public == "X-Strapi-Signature does not match the HMAC-SHA256 of the body"
