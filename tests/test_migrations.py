"""Schema migrations (core/migrations, core/schema_migrations.py), on SQLite and on Postgres
(TEST_DATABASE_URL): the revisions build what core/models.py declares, upgrades keep every row,
databases made before migrations are adopted without losing any, concurrent starts don't race,
and a start at head costs one query.

Each test gets a database of its own: a SQLite file, or a throwaway Postgres database made and
dropped here (the shared test database is never touched)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine, make_url

from core import db, schema_migrations
from core.cli import main
from core.models import Alert, Job
from core.settings import get_settings

DIALECTS = ["sqlite", "postgresql"]


def _admin_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url.startswith("postgres"):
        pytest.skip("Postgres only with TEST_DATABASE_URL")
    return str(make_url(db.normalize_url(url)).set(database="postgres"))


@pytest.fixture(params=DIALECTS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mirror.db'}"
        return
    admin_url = _admin_url()
    name = f"llmflow_mig_{uuid.uuid4().hex[:10]}"
    admin = db.make_engine(admin_url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield str(make_url(admin_url).set(database=name))
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def engine(empty_url: str) -> Iterator[Engine]:
    eng = db.make_engine(empty_url)
    yield eng
    eng.dispose()


def _upgrade_to(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.upgrade(schema_migrations.alembic_config(conn), revision)


def _view_rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        query = "SELECT job_id, status, error_type FROM workflow_jobs ORDER BY job_id"
        return [tuple(r) for r in conn.execute(sa.text(query))]


def _base() -> Any:
    return schema_migrations._base_revision()


def test_head_revision_is_the_newest_in_core_migrations() -> None:
    scripts = ScriptDirectory.from_config(schema_migrations.alembic_config())
    assert scripts.get_heads() == [schema_migrations.HEAD_REVISION]
    assert [s.revision for s in scripts.walk_revisions()][-1] == schema_migrations.BASE_REVISION


def test_models_and_migrations_agree(engine: Engine) -> None:
    """An autogenerate comparison against a freshly upgraded database finds nothing: a model
    change without its revision (or the reverse) fails here."""
    db.create_tables(engine)
    assert schema_migrations.current(engine) == schema_migrations.HEAD_REVISION
    assert schema_migrations.differences(engine) == []
    assert _view_rows(engine) == []
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            kinds = conn.execute(
                sa.text(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND data_type IN ('json', 'jsonb') "
                    "AND table_name != 'workflow_jobs'"
                )
            ).all()
        assert sorted((t, c) for t, c, _ in kinds) == [
            ("alerts", "details"),
            ("jobs", "error"),
            ("jobs", "fork_plan"),
            ("jobs", "input_data"),
            ("jobs", "metadata"),
            ("jobs", "output"),
        ]
        assert {k for _, _, k in kinds} == {"jsonb"}
    indexes = {i["name"]: i["column_names"] for i in sa.inspect(engine).get_indexes("jobs")}
    assert indexes["ix_jobs_status_created"] == ["status", "created_at"]
    assert indexes["ix_jobs_workflow_created"] == ["workflow_name", "created_at"]
    assert indexes["ix_jobs_created"] == ["created_at", "job_id"]
    assert indexes["ix_jobs_fork_of_created"] == ["fork_of", "created_at"]


NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _rows() -> dict[str, list[dict[str, Any]]]:
    """A row of every kind for every table of revision 0001 (Core, not the models: they follow
    head, these rows the first revision)."""
    jobs = [
        {
            "job_id": f"job-{i}",
            "workflow_name": "quickstart",
            "workflow_version": "1.0.0",
            "status": status,
            "input_data": {"topic": "ünïcode ✓", "n": i},
            "output": ["a", {"b": None}] if status == "completed" else None,
            "error": {"type": "LLM_ERROR", "message": "boom"} if status == "failed" else None,
            "metadata": {"steps": [{"id": "s", "status": status}]},
            "run_id": f"run-{i}",
            "idempotency_key": f"key-{i}" if i % 2 else None,
            "request_hash": "h" * 64,
            "webhook_url": "https://example.com/hook",
            "owner": "cli",
            "user_id": "u1",
            "username": "Ada",
            "action": "generate",
            "priority": i,
            "debug_mode": bool(i % 2),
            "parent_job_id": "job-0" if i else None,
            "waiting_since": None,
            "deleted_at": NOW if status == "cancelled" else None,
            "created_at": NOW + timedelta(seconds=i),
            "started_at": NOW,
            "completed_at": NOW if status != "running" else None,
            "updated_at": NOW,
        }
        for i, status in enumerate(["completed", "failed", "running", "cancelled"])
    ]
    secrets = [{"job_id": "job-0", "webhook_secret": "fernet:" + "x" * 300, "created_at": NOW}]
    # Serial ids are left to the database, as the service does.
    deliveries = [
        {
            "delivery_id": f"d-{n}",
            "job_id": "job-0",
            "event": "workflow.completed",
            "url": "https://example.com/hook",
            "attempt": n,
            "status_code": 500 if n == 1 else 200,
            "outcome": "retrying" if n == 1 else "delivered",
            "error": "HTTP 500" if n == 1 else None,
            "duration_ms": 12,
            "response_snippet": "ok",
            "created_at": NOW,
        }
        for n in (1, 2)
    ]
    alerts = [
        {
            "level": "ERROR",
            "source": "workflow",
            "message": "job-1 failed",
            "job_id": "job-1",
            "details": {"error": {"type": "LLM_ERROR"}},
            "created_at": NOW,
        }
    ]
    return {
        "jobs": jobs,
        "job_secrets": secrets,
        "webhook_deliveries": deliveries,
        "alerts": alerts,
    }


def _insert(engine: Engine, metadata: sa.MetaData, rows: dict[str, list[dict[str, Any]]]) -> None:
    with engine.begin() as conn:
        for name, table_rows in rows.items():
            table = metadata.tables[name]
            conn.execute(
                table.insert(), [{k: v for k, v in r.items() if k in table.c} for r in table_rows]
            )


def _assert_rows(engine: Engine, rows: dict[str, list[dict[str, Any]]]) -> None:
    """Every row reads back as inserted, through the head schema (reflected)."""
    metadata = sa.MetaData()
    with engine.connect() as conn:
        for name, table_rows in rows.items():
            table = sa.Table(name, metadata, autoload_with=conn)
            key = next(iter(table.primary_key.columns))
            columns = [table.c[c] for c in table_rows[0]]
            got = [
                {k: db.as_utc(v) if isinstance(v, datetime) else v for k, v in r._mapping.items()}
                for r in conn.execute(sa.select(*columns).order_by(key))
            ]
            assert got == table_rows, name


def _assert_jobs_work(engine: Engine) -> None:
    """The models read the rows: a job, its deliveries and secret, the list (which the newest
    index serves) and the earlier service's view."""
    assert db.get_job(engine, "job-1").error == {"type": "LLM_ERROR", "message": "boom"}  # type: ignore[union-attr]
    assert [d.outcome for d in db.list_deliveries(engine, "job-0")] == ["retrying", "delivered"]
    assert db.get_job_secret(engine, "job-0") == "fernet:" + "x" * 300
    assert [j.job_id for j in db.list_jobs(engine, limit=10)] == ["job-2", "job-1", "job-0"]
    assert _view_rows(engine) == [
        ("job-0", "completed", None),
        ("job-1", "failed", "LLM_ERROR"),
        ("job-2", "running", None),
    ]


def test_upgrading_from_the_first_revision_keeps_every_row(engine: Engine) -> None:
    _upgrade_to(engine, schema_migrations.BASE_REVISION)
    rows = _rows()
    _insert(engine, _base().metadata, rows)
    db.create_tables(engine)
    assert schema_migrations.current(engine) == schema_migrations.HEAD_REVISION
    _assert_rows(engine, rows)
    _assert_jobs_work(engine)
    assert [a.message for a in db.list_alerts(engine)] == ["job-1 failed"]
    # New rows go in after the old ones: a job, and an alert with the next id.
    db.insert_job(engine, Job(job_id="job-new", workflow_name="w", workflow_version="1"))
    db.insert_alert(engine, Alert(level="INFO", source="t", message="new"))
    assert [a.id for a in db.list_alerts(engine)] == [2, 1]


# Columns and a table the releases before migrations did not all have yet.
NEWER_COLUMNS = ("owner", "waiting_since")


def _make_like_an_earlier_release(engine: Engine, *, newest_index: bool) -> None:
    """What create_tables of a release before migrations left: create_all of its models (those
    are revision 0001's tables, kept there as they were) and the view, here minus columns and a
    table that release did not have yet (and json, not jsonb, on Postgres, as the earliest
    releases made it). `newest_index`: a build between releases already made the index revision
    0002 adds."""
    base = _base()
    with engine.begin() as conn:
        base.metadata.create_all(conn)
        conn.execute(sa.text("DROP TABLE alerts"))
        conn.execute(sa.text("DROP INDEX ix_jobs_owner_created"))
        if newest_index:
            conn.execute(sa.text("CREATE INDEX ix_jobs_created ON jobs (created_at, job_id)"))
        for column in NEWER_COLUMNS:
            conn.execute(sa.text(f"ALTER TABLE jobs DROP COLUMN {column}"))
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE jobs ALTER COLUMN output TYPE json"))
        base.create_view(conn)


@pytest.mark.parametrize("newest_index", [False, True])
def test_a_database_made_before_migrations_is_stamped_at_start_keeping_its_rows(
    engine: Engine, newest_index: bool
) -> None:
    _make_like_an_earlier_release(engine, newest_index=newest_index)
    rows = _rows()
    rows.pop("alerts")
    for row in rows["jobs"]:
        for column in NEWER_COLUMNS:
            row.pop(column)
    legacy = sa.MetaData()
    legacy.reflect(engine)
    _insert(engine, legacy, rows)
    assert schema_migrations.current(engine) is None

    db.create_tables(engine)

    assert schema_migrations.current(engine) == schema_migrations.HEAD_REVISION
    assert schema_migrations.differences(engine) == []
    _assert_rows(engine, rows)
    _assert_jobs_work(engine)
    with engine.connect() as conn:
        owners = conn.execute(sa.text("SELECT DISTINCT owner FROM jobs")).scalars().all()
    assert owners == [None]
    db.insert_alert(engine, Alert(level="INFO", source="t", message="the table was added"))


def test_concurrent_starts_on_an_empty_database_do_not_race(empty_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        engine = db.make_engine(empty_url)
        try:
            barrier.wait()
            db.create_tables(engine)
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    engine = db.make_engine(empty_url)
    try:
        with engine.connect() as conn:
            stamped = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        assert stamped == [(schema_migrations.HEAD_REVISION,)]
    finally:
        engine.dispose()


def test_a_start_at_head_is_one_query(engine: Engine) -> None:
    db.create_tables(engine)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        db.create_tables(engine)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert statements == ["SELECT version_num FROM alembic_version"]


def test_a_database_a_newer_release_migrated_is_left_alone(
    engine: Engine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db.create_tables(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    db.create_tables(engine)  # a rolled-back release still starts
    assert schema_migrations.current(engine) == "9999"
    assert _cli(monkeypatch, engine, "upgrade") == 1
    assert "9999: newer than this release knows" in capsys.readouterr().err


def _cli(monkeypatch: pytest.MonkeyPatch, engine: Engine, action: str) -> int:
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    try:
        return main(["db", action])
    finally:
        get_settings.cache_clear()


def test_cli_db_current_and_upgrade(
    engine: Engine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    head = schema_migrations.HEAD_REVISION
    assert _cli(monkeypatch, engine, "current") == 1
    assert "run `llmflow db upgrade`" in capsys.readouterr().err
    _upgrade_to(engine, schema_migrations.BASE_REVISION)
    assert _cli(monkeypatch, engine, "current") == 1
    assert capsys.readouterr().err.strip() == (
        f"{schema_migrations.BASE_REVISION}: behind head {head}; run `llmflow db upgrade`"
    )
    assert _cli(monkeypatch, engine, "upgrade") == 0
    assert capsys.readouterr().out.strip() == (
        f"upgraded {schema_migrations.BASE_REVISION} → {head} (head)"
    )
    assert _cli(monkeypatch, engine, "upgrade") == 0
    assert capsys.readouterr().out.strip() == f"already at {head} (head)"
    assert _cli(monkeypatch, engine, "current") == 0
    assert capsys.readouterr().out.strip() == f"{head} (head)"
