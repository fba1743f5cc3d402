"""Odd input gets a 4xx naming the field and never corrupts the mirror; schema creation is safe
when a gateway and a worker start together on an empty database."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from temporalio.client import Client

from core import db
from core.contracts import MirrorUpdate
from core.json_safety import problems, sanitized
from core.models import Alert
from core.settings import Settings
from core.webhook_signing import sign_hex
from tests.api_server import gateway
from tests.test_inbound_webhooks import SECRET, STRAPI_URL, hook_settings, hooks  # noqa: F401

QUICK = '{"workflow_name": "quickstart", "input_data": {"topic": "t", "note": %s}}'


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ('"\\ud800"', "lone surrogate"),
        ('"a\\u0000b"', "NUL"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        ("-Infinity", "finite"),
        ("1e400", "finite"),
        ('{"deep": ["ok", "\\udfff"]}', "lone surrogate"),
    ],
)
async def test_values_no_store_accepts_are_422_naming_the_field(
    temporal_client: Client, settings: Settings, engine: Engine, raw: str, says: str
) -> None:
    async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
        resp = await api.post(
            "/api/v1/jobs", content=QUICK % raw, headers={"Content-Type": "application/json"}
        )
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["error"] == "ValidationError" and says in body["message"]
    assert body["detail"][0]["loc"][:3] == ["body", "input_data", "note"]


def test_sanitized_keeps_clean_values_and_replaces_the_rest() -> None:
    clean = {"a": [1, 2.5, "ok?", {"b": None}]}
    assert sanitized(clean) is clean
    dirty = {"a\x00": ["x\x00y", float("nan"), "\ud800?"], "n": float("inf")}
    assert sanitized(dirty) == {"a\ufffd": ["x\ufffdy", None, "\ufffd?"], "n": None}
    assert problems(sanitized(dirty)) == []
    deep: list = []
    node = deep
    for _ in range(50_000):  # no recursion: depth costs nothing
        node.append([])
        node = node[0]
    node.append("\x00")
    assert problems(deep)[0][1].startswith("contains a NUL")


def test_the_mirror_stores_outputs_postgres_can_query(engine: Engine) -> None:
    job_id = f"odd-{uuid.uuid4()}"
    update = MirrorUpdate(
        job_id=job_id,
        workflow_name="quickstart",
        workflow_version="1.0.0",
        status="completed",
        output={"text": "before\x00after", "score": float("nan")},
        metadata={"steps": [{"id": "s", "output": "\ud800"}]},
    )
    db.upsert_job(engine, update)
    db.insert_alert(
        engine, Alert(level="INFO", source="odd", message="m\x00", details={"x": "\x00"})
    )
    row = db.get_job(engine, job_id)
    assert row is not None
    assert row.output == {"text": "before\ufffdafter", "score": None}
    assert row.job_metadata == {"steps": [{"id": "s", "output": "\ufffd"}]}
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            kinds = conn.execute(
                text(
                    "SELECT data_type FROM information_schema.columns "
                    "WHERE table_name = 'jobs' AND column_name IN ('input_data', 'output')"
                )
            ).scalars()
            assert set(kinds) == {"jsonb"}
            # The query that broke on a stored NUL, over the whole table.
            count = conn.execute(
                text("SELECT count(*) FROM jobs WHERE output->>'text' IS NOT NULL")
            ).scalar_one()
            assert count >= 1
    db.delete_job(engine, job_id)


async def test_a_deeply_nested_signed_event_is_a_4xx_not_a_500(
    hooks: tuple[httpx.AsyncClient, object],  # noqa: F811
) -> None:
    api, _ = hooks
    body = '{"event": "entry.create", "model": "x", "entry": ' + "[" * 5000 + "]" * 5000 + "}"
    resp = await api.post(
        STRAPI_URL,
        content=body.encode(),
        headers={
            "Content-Type": "application/json",
            "X-Webhook-Signature": sign_hex(SECRET, body.encode()),
        },
    )
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.json()["error"] and resp.json()["message"]
    again = await api.get("/health")  # the connection and the gateway are fine
    assert again.status_code in (200, 503)


def test_concurrent_schema_creation_on_an_empty_postgres_database(database_url: str) -> None:
    if not database_url.startswith("postgres"):
        pytest.skip("the race is Postgres's (CREATE TYPE / pg_type); SQLite serialises writers")
    name = f"llmflow_race_{uuid.uuid4().hex[:10]}"
    admin = db.make_engine(str(make_url(db.normalize_url(database_url)).set(database="postgres")))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = str(make_url(db.normalize_url(database_url)).set(database=name))
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        engine = db.make_engine(url)
        try:
            barrier.wait()
            db.create_tables(engine)
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    try:
        threads = [threading.Thread(target=start) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
