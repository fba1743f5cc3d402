"""Database engine and the mirror's writes, as plain functions over a sync SQLAlchemy engine.

Async callers (gateway handlers, the mirror activity) run these in a thread. The same code
serves SQLite (embedded default) and Postgres (`postgresql://` or `postgresql+psycopg://`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, event, func, inspect, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.schema import CreateColumn
from sqlalchemy.types import JSON, String, Text
from sqlmodel import Session, SQLModel, create_engine, select

from core.contracts import TERMINAL_STATUSES, MirrorUpdate
from core.json_safety import sanitized
from core.models import Alert, Job, JobSecret, WebhookDelivery, utcnow


def normalize_url(url: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, *, echo: bool = False) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the gateway read while the worker's mirror activity writes.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(
        url,
        echo=echo,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        connect_args={"connect_timeout": 5},
    )


log = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every process that creates the schema.
SCHEMA_LOCK_ID = 0x6C6C6D66  # "llmf"


def create_tables(engine: Engine, *, auto_migrate: bool = True) -> None:
    """Bring the schema to the newest migration (core/schema_migrations.py): one query when it
    is there already. A database made before migrations is adopted, keeping its rows.

    With `auto_migrate` false (DATABASE_AUTO_MIGRATE) nothing is changed: a database behind
    head raises SchemaNotAtHead, whose message says what to run."""
    from core.schema_migrations import require_head, upgrade

    if auto_migrate:
        upgrade(engine)
    else:
        require_head(engine)


def _add_missing_columns(conn: Connection, metadata: MetaData) -> None:
    """Add the columns and indexes of `metadata` an existing table lacks; on Postgres turn json
    into jsonb and widen varchar to text where `metadata` says so."""
    inspector = inspect(conn)
    postgres = conn.dialect.name == "postgresql"
    for table in metadata.sorted_tables:
        existing = {c["name"]: c["type"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in existing:
                ddl = CreateColumn(column).compile(dialect=conn.dialect)
                conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {ddl}"))
            elif postgres and _json_to_jsonb(existing[column.name], column):
                _convert_to_jsonb(conn, table.name, column.name)
            elif postgres and _widened_to_text(existing[column.name], column):
                conn.execute(
                    text(f'ALTER TABLE {table.name} ALTER COLUMN "{column.name}" TYPE text')
                )
        for index in table.indexes:
            index.create(conn, checkfirst=True)


def _json_to_jsonb(current: Any, column: Any) -> bool:
    wanted = column.type.dialect_impl(postgresql.dialect())
    return (
        isinstance(current, JSON) and not isinstance(current, JSONB) and isinstance(wanted, JSONB)
    )


def _widened_to_text(current: Any, column: Any) -> bool:
    return (
        isinstance(current, String) and current.length is not None and isinstance(column.type, Text)
    )


def _convert_to_jsonb(conn: Connection, table: str, column: str) -> None:
    # Tables created by earlier releases used json; a row jsonb refuses keeps the column as is.
    try:
        with conn.begin_nested():
            conn.execute(
                text(
                    f'ALTER TABLE {table} ALTER COLUMN "{column}" TYPE jsonb USING "{column}"::jsonb'
                )
            )
    except SQLAlchemyError as exc:
        log.warning(
            "kept %s.%s as json (a row jsonb refuses): %s", table, column, type(exc).__name__
        )


def as_utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_time(value: str | None) -> datetime | None:
    return as_utc(datetime.fromisoformat(value)) if value else None


def get_job(engine: Engine, job_id: str) -> Job | None:
    with Session(engine) as session:
        return session.get(Job, job_id)


def get_job_by_idempotency_key(engine: Engine, key: str) -> Job | None:
    with Session(engine) as session:
        return session.exec(select(Job).where(Job.idempotency_key == key)).first()


def insert_job(engine: Engine, job: Job, secret: JobSecret | None = None) -> Job:
    """Insert a new queued job (and its webhook secret, in the same transaction); raises
    IntegrityError when the id or idempotency key exists."""
    # A Core insert, not the ORM unit of work: every submit makes one, and the session's flush
    # machinery was the largest share of a submit's CPU in the gateway (bench/README.md).
    with engine.begin() as conn:
        conn.execute(Job.__table__.insert(), _column_values(job))  # type: ignore[attr-defined]
        if secret is not None:
            conn.execute(
                JobSecret.__table__.insert(),  # type: ignore[attr-defined]
                _column_values(secret),
            )
    return job


def _column_values(row: SQLModel) -> dict[str, Any]:
    """{column name: value} of a table model (an attribute may name its column otherwise:
    Job.job_metadata is the `metadata` column)."""
    return {column: getattr(row, attr) for attr, column in _columns(type(row))}


@cache
def _columns(model: type[SQLModel]) -> tuple[tuple[str, str], ...]:
    mapper = inspect(model)
    return tuple((attr.key, attr.columns[0].name) for attr in mapper.column_attrs)


def delete_job(engine: Engine, job_id: str) -> None:
    """Forget a job that never started (Temporal refused it)."""
    with Session(engine) as session:
        for model in (JobSecret, Job):
            row = session.get(model, job_id)
            if row is not None:
                session.delete(row)
        session.commit()


def get_job_secret(engine: Engine, job_id: str) -> str | None:
    with Session(engine) as session:
        row = session.get(JobSecret, job_id)
        return row.webhook_secret if row else None


def upsert_job(engine: Engine, update: MirrorUpdate) -> str:
    """Idempotent mirror write. Never moves a finished job back to running, except for a new
    run (reset) of the same job id. Returns what happened: inserted | updated | skipped."""
    for _ in range(3):
        try:
            return _upsert_once(engine, update)
        except IntegrityError:
            continue  # lost an insert race with another writer; the row exists now
    return _upsert_once(engine, update)


def _upsert_once(engine: Engine, update: MirrorUpdate) -> str:
    # Core statements, not an ORM get + flush: the worker makes two of these per job, and the
    # ORM's object and unit of work were most of their cost.
    now = utcnow()
    jobs = Job.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        current = conn.execute(
            select(jobs.c.run_id, jobs.c.status, jobs.c["metadata"])
            .where(jobs.c.job_id == update.job_id)
            .with_for_update()
        ).first()
        values = _mirror_values(update, now)
        if current is None:
            row = Job(
                job_id=update.job_id,
                workflow_name=update.workflow_name,
                workflow_version=update.workflow_version,
                owner=update.owner,
                parent_job_id=update.parent_job_id,
            )
            conn.execute(jobs.insert(), {**_column_values(row), **values})
            return "inserted"
        # The records column itself, not an IS NULL test: JSON null and SQL NULL both mean none.
        run_id, status, records = current
        same_run = run_id is None or run_id == update.run_id
        if same_run and status in TERMINAL_STATUSES:
            if update.status not in TERMINAL_STATUSES:
                return "skipped"
            if update.metadata is None and records is not None:
                # An observer (the gateway reading Temporal) knows the end but not the
                # records; the interpreter's final write already said more.
                return "skipped"
        conn.execute(jobs.update().where(jobs.c.job_id == update.job_id).values(values))
        return "updated"


def _mirror_values(update: MirrorUpdate, now: datetime) -> dict[str, Any]:
    """{column: value} an upsert writes; a column left out keeps what the row has."""
    values: dict[str, Any] = {"status": update.status, "updated_at": now}
    if update.run_id:
        values["run_id"] = update.run_id
    started_at = parse_time(update.started_at)
    if started_at is not None:
        values["started_at"] = started_at
    if update.status in TERMINAL_STATUSES or update.waiting is False:
        values["waiting_since"] = None
    elif update.waiting:
        values["waiting_since"] = parse_time(update.waiting_since) or now
    if update.status in TERMINAL_STATUSES:
        # Outputs come from LLMs and upstream services: store what every database accepts.
        values.update(
            completed_at=parse_time(update.completed_at) or now,
            output=sanitized(update.output),
            error=sanitized(update.error),
            metadata=sanitized(update.metadata),
        )
    else:
        # A running job has no result yet, also after a reset of one that had.
        values.update(completed_at=None, output=None, error=None, metadata=None)
    return values


@dataclass(frozen=True)
class JobFilter:
    """Which rows a job listing shows. `owner=None` means every owner (an admin key)."""

    statuses: tuple[str, ...] | None = None
    waiting: bool = False
    workflow_name: str | None = None
    user_id: str | None = None
    owner: str | None = None
    since: datetime | None = None
    include_deleted: bool = False

    def apply(self, query: Any) -> Any:
        if self.statuses:
            query = query.where(Job.status.in_(self.statuses))  # type: ignore[attr-defined]
        if self.waiting:
            query = query.where(Job.waiting_since.is_not(None))  # type: ignore[union-attr]
        if self.workflow_name:
            query = query.where(Job.workflow_name == self.workflow_name)
        if self.user_id:
            query = query.where(Job.user_id == self.user_id)
        if self.owner is not None:
            query = query.where(Job.owner == self.owner)
        if self.since is not None:
            query = query.where(Job.created_at >= _utc(self.since))  # type: ignore[operator]
        if not self.include_deleted:
            query = query.where(Job.deleted_at.is_(None))  # type: ignore[union-attr]
        return query


def list_jobs(
    engine: Engine,
    where: JobFilter | None = None,
    *,
    limit: int = 50,
    before: tuple[datetime, str] | None = None,
    offset: int = 0,
) -> list[Job]:
    """Newest first; `before` = (created_at, job_id) of the last row seen (keyset cursor)."""
    with Session(engine) as session:
        query = (where or JobFilter()).apply(select(Job))
        if before is not None:
            created, job_id = _utc(before[0]), before[1]
            query = query.where(
                (Job.created_at < created) | ((Job.created_at == created) & (Job.job_id < job_id))  # type: ignore[arg-type,operator]
            )
        query = query.order_by(Job.created_at.desc(), Job.job_id.desc())  # type: ignore[attr-defined,union-attr]
        return list(session.exec(query.offset(offset).limit(limit)).all())


def count_jobs(engine: Engine, where: JobFilter | None = None) -> int:
    with Session(engine) as session:
        query = (where or JobFilter()).apply(select(func.count()).select_from(Job))
        return int(session.exec(query).one())


def hide_jobs(engine: Engine, job_ids: list[str]) -> None:
    """Take finished jobs off the job list (DELETE /jobs/bulk); rows stay for GET by id."""
    with Session(engine) as session:
        now = utcnow()
        for job_id in job_ids:
            row = session.get(Job, job_id)
            if row is not None and row.deleted_at is None:
                row.deleted_at = now
                session.add(row)
        session.commit()


def get_jobs(engine: Engine, job_ids: list[str]) -> dict[str, Job]:
    with Session(engine) as session:
        rows = session.exec(select(Job).where(Job.job_id.in_(job_ids))).all()  # type: ignore[attr-defined]
        return {row.job_id: row for row in rows}


def list_forks(engine: Engine, job_id: str, owner: str | None = None) -> list[Job]:
    """The jobs forked from `job_id`, oldest first; `owner`: only that key's (None: all)."""
    with Session(engine) as session:
        query = select(Job).where(Job.fork_of == job_id, Job.deleted_at.is_(None))  # type: ignore[union-attr]
        if owner is not None:
            query = query.where(Job.owner == owner)
        query = query.order_by(Job.created_at, Job.job_id)  # type: ignore[arg-type]
        return list(session.exec(query).all())


def job_versions(engine: Engine, job_ids: list[str]) -> dict[str, datetime]:
    """updated_at of each existing job among `job_ids`: one light query, no row objects. Every
    write of a job row (upsert, insert, touch) moves it, so an equal value means an unchanged
    row."""
    table = Job.__table__  # type: ignore[attr-defined]
    query = select(table.c.job_id, table.c.updated_at).where(table.c.job_id.in_(job_ids))
    with engine.connect() as conn:
        return {job_id: updated for job_id, updated in conn.execute(query)}


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def record_delivery(engine: Engine, delivery: WebhookDelivery) -> None:
    with Session(engine) as session:
        session.add(delivery)
        session.commit()


def list_deliveries(engine: Engine, job_id: str) -> list[WebhookDelivery]:
    with Session(engine) as session:
        query = select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
        return list(session.exec(query.order_by(WebhookDelivery.id)).all())  # type: ignore[arg-type]


def insert_alert(engine: Engine, alert: Alert) -> None:
    alert.details = sanitized(alert.details)
    alert.message = sanitized(alert.message)
    with Session(engine) as session:
        session.add(alert)
        session.commit()


def unfinished_jobs(engine: Engine, *, updated_before: datetime, limit: int) -> list[Job]:
    """Jobs the mirror still shows as queued/running, least recently updated first."""
    with Session(engine) as session:
        query = (
            select(Job)
            .where(Job.status.in_(("queued", "running")))  # type: ignore[attr-defined]
            .where(Job.updated_at < updated_before)  # type: ignore[arg-type]
            .order_by(Job.updated_at)  # type: ignore[arg-type]
            .limit(limit)
        )
        return list(session.exec(query).all())


def touch_job(engine: Engine, job_id: str) -> None:
    """Mark a row as looked at, so the reconciler's scan moves on to others."""
    with Session(engine) as session:
        row = session.get(Job, job_id)
        if row is not None:
            row.updated_at = utcnow()
            session.add(row)
            session.commit()


# --- Alerts and counts for the gateway's /alerts and /metrics ----------------------------------


def _utc(value: datetime) -> datetime:
    # SQLite compares the stored UTC text, so an aware bound in another zone must be converted,
    # not just labelled.
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def list_alerts(
    engine: Engine,
    *,
    levels: tuple[str, ...] | None = None,
    source: str | None = None,
    job_id: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    before: tuple[datetime, int] | None = None,
    owner: str | None = None,
) -> list[Alert]:
    """Newest first; `since` is inclusive; `before` = (created_at, id) of the last row seen
    (keyset cursor); `owner` hides alerts about other principals' jobs."""
    with Session(engine) as session:
        query = _visible_to(select(Alert), owner)
        if levels is not None:
            query = query.where(Alert.level.in_(levels))  # type: ignore[attr-defined]
        if source:
            query = query.where(Alert.source == source)
        if job_id:
            query = query.where(Alert.job_id == job_id)
        if since is not None:
            query = query.where(Alert.created_at >= _utc(since))  # type: ignore[operator]
        if before is not None:
            created, alert_id = _utc(before[0]), before[1]
            query = query.where(
                (Alert.created_at < created)  # type: ignore[operator]
                | ((Alert.created_at == created) & (Alert.id < alert_id))  # type: ignore[operator]
            )
        query = query.order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit)  # type: ignore[attr-defined,union-attr]
        return list(session.exec(query).all())


def _visible_to(query: Any, owner: str | None) -> Any:
    """Alerts that name a job are shown to that job's owner (and admins, `owner=None`) only."""
    if owner is None:
        return query
    own_jobs = select(Job.job_id).where(Job.owner == owner)
    return query.where(Alert.job_id.is_(None) | Alert.job_id.in_(own_jobs))  # type: ignore[union-attr]


def alert_summary(
    engine: Engine,
    *,
    since: datetime | None = None,
    source: str | None = None,
    owner: str | None = None,
) -> tuple[list[tuple[str, str, int]], Alert | None]:
    """Counts per (level, source) and the newest alert, since `since` (inclusive)."""
    with Session(engine) as session:
        counts = _visible_to(
            select(Alert.level, Alert.source, func.count()).group_by(Alert.level, Alert.source),
            owner,
        )
        if source:
            counts = counts.where(Alert.source == source)
        if since is not None:
            counts = counts.where(Alert.created_at >= _utc(since))  # type: ignore[operator]
        rows = [(level, src, int(n)) for level, src, n in session.exec(counts).all()]
    latest = list_alerts(engine, source=source, since=since, limit=1, owner=owner)
    return rows, (latest[0] if latest else None)


def alert_level_counts(engine: Engine) -> dict[str, int]:
    """How many alerts are stored per level."""
    with Session(engine) as session:
        query = select(Alert.level, func.count()).group_by(Alert.level)
        return {level: int(n) for level, n in session.exec(query).all()}


def job_status_counts(engine: Engine) -> list[tuple[str, str, int]]:
    """(status, workflow_name, count) for every pair present in the mirror."""
    with Session(engine) as session:
        query = select(Job.status, Job.workflow_name, func.count()).group_by(
            Job.status, Job.workflow_name
        )
        return [(status, name, int(n)) for status, name, n in session.exec(query).all()]


def owner_spend_since(engine: Engine, owner: str, since: datetime) -> tuple[float, list[str]]:
    """What `owner`'s jobs created since `since` spent: the finished ones' total_cost_usd summed
    in the database (their metadata holds every step: it is not read back), and the ids of the
    ones still open, whose spend so far only their runs know."""
    metadata = Job.__table__.c["metadata"]  # type: ignore[attr-defined]
    recent = (Job.owner == owner) & (Job.created_at >= since)  # type: ignore[operator]
    with Session(engine) as session:
        total = session.exec(
            select(func.coalesce(func.sum(metadata["total_cost_usd"].as_float()), 0.0)).where(
                recent,
                Job.status.in_(TERMINAL_STATUSES),  # type: ignore[attr-defined]
            )
        ).one()
        open_ids = session.exec(
            select(Job.job_id).where(recent, Job.status.notin_(TERMINAL_STATUSES))  # type: ignore[attr-defined]
        ).all()
    return float(total or 0.0), list(open_ids)
