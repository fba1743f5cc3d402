"""Schema migrations of the mirror database: Alembic, with the revisions in core/migrations/versions.

`upgrade(engine)` is what the gateway, the worker and the reconciler run at start (through
`core.db.create_tables`) and what `llmflow db upgrade` runs:

- at head: one query (the alembic_version row) and nothing else;
- otherwise, holding the schema lock (a Postgres advisory lock; SQLite's write lock), it reads
  the version again (another process may have just upgraded) and then
  - an empty database is upgraded from nothing;
  - a database the releases before migrations made (our tables, no alembic_version) is first
    brought to the first revision's shape, keeping every row (missing tables, columns and
    indexes added, json turned into jsonb), stamped with it, then upgraded;
  - a database at a revision this release does not know (a newer release migrated it, then was
    rolled back) is left as it is, with a warning.

Every step of one upgrade runs in one transaction: on Postgres a failed revision leaves nothing
half done.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlmodel import SQLModel

import core.models  # noqa: F401  (declares the tables on SQLModel.metadata)
from core.db import SCHEMA_LOCK_ID, _add_missing_columns

# Alembic is imported only when the database is not at head: a start at head needs neither it
# nor the revision files.
if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The schema of the releases before migrations; their databases are stamped with it.
BASE_REVISION = "0001"
# The newest revision in core/migrations/versions; a new revision moves it (a test checks).
HEAD_REVISION = "0003"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for core/migrations; with `connection`, env.py runs on it (in
    its transaction) instead of connecting to DATABASE_URL."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision this release knows."""
    return HEAD_REVISION


def known(revision: str) -> bool:
    """Whether core/migrations/versions has this revision."""
    return any(s.revision == revision for s in _scripts().walk_revisions())


def current(engine: Engine) -> str | None:
    """The database's revision; None when it has no alembic_version (an empty database, or one
    made before migrations)."""
    stamped = _stamped(engine)
    return stamped[0] if stamped else None


def _stamped(engine: Engine) -> tuple[str, ...] | None:
    """alembic_version's rows, in one query; None when the table is missing."""
    with engine.connect() as conn:  # an unreachable database raises here
        try:
            return tuple(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
        except (OperationalError, ProgrammingError):
            return None  # no such table


# SQLite answers "database is locked" at once, without waiting, when two connections' lock
# upgrades would deadlock (a concurrent first start); the remedy is to run the transaction again.
SQLITE_LOCKED_ATTEMPTS = 5


def upgrade(engine: Engine) -> str:
    """Bring the database to head (see the module's docstring); returns its revision after."""
    target = head()
    for attempt in range(1, SQLITE_LOCKED_ATTEMPTS + 1):
        try:
            # Inside the retry: a new SQLite connection switches to WAL, which is refused at
            # once while another start holds the write lock.
            if _stamped(engine) == (target,):
                return target
            return _upgrade_locked(engine, target)
        except OperationalError as exc:
            locked = engine.dialect.name == "sqlite" and "database is locked" in str(exc)
            if not locked or attempt == SQLITE_LOCKED_ATTEMPTS:
                raise
            time.sleep(0.1 * attempt)
    raise AssertionError("unreachable")


def _upgrade_locked(engine: Engine, target: str) -> str:
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    with engine.begin() as conn:
        _lock(conn)
        heads = MigrationContext.configure(conn).get_current_heads()
        if heads == (target,):
            return target  # another process upgraded it while this one waited
        newer = [h for h in heads if not known(h)]
        if newer:
            log.warning(
                "database schema is at revision %s, which this release does not know (its newest "
                "is %s): a newer release migrated it; leaving it as it is",
                ", ".join(newer),
                target,
            )
            return newer[0]
        if not heads and _has_mirror_tables(conn):
            log.info("database made before migrations: adopting it as revision %s", BASE_REVISION)
            adopt(conn)
            _stamp(conn, BASE_REVISION)
        command.upgrade(alembic_config(conn), "head")
    return target


def describe(revision: str | None) -> tuple[bool, str]:
    """(at head?, one line saying where a database at `revision` stands), for `llmflow db`."""
    if revision == HEAD_REVISION:
        return True, f"{revision} (head)"
    if revision is None:
        return False, (
            "none: no alembic_version (an empty database, or tables made before migrations); "
            "run `llmflow db upgrade`"
        )
    if not known(revision):
        return False, (
            f"{revision}: newer than this release knows (its head is {HEAD_REVISION}); "
            "a newer release migrated this database"
        )
    return False, f"{revision}: behind head {HEAD_REVISION}; run `llmflow db upgrade`"


def stamp(engine: Engine, revision: str = "head") -> None:
    """Record `revision` as the database's without running anything."""
    with engine.begin() as conn:
        _lock(conn)
        _stamp(conn, revision)


def _stamp(conn: Connection, revision: str) -> None:
    from alembic.runtime.migration import MigrationContext

    MigrationContext.configure(conn).stamp(_scripts(), revision)


def _lock(conn: Connection) -> None:
    """Serialise schema changes between processes, until the transaction ends.

    A gateway and a worker often start together on an empty database: the second waits for
    the first instead of racing it into duplicate-table errors."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": SCHEMA_LOCK_ID})
    elif conn.dialect.name == "sqlite":
        # pysqlite opens no transaction before DDL: take SQLite's write lock now.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _base_revision() -> ModuleType:
    """The first revision's module: its `metadata` (the tables as they were) and `create_view`."""
    return _scripts().get_revision(BASE_REVISION).module  # type: ignore[union-attr]


def _has_mirror_tables(conn: Connection) -> bool:
    names = set(inspect(conn).get_table_names())
    return any(name in names for name in _base_revision().metadata.tables)


def adopt(conn: Connection) -> None:
    """Bring a database made by create_all of a release before migrations (maybe an older one,
    missing the newer columns) to the first revision's shape, keeping every row."""
    base = _base_revision()
    # Postgres changes no column type a view selects (json → jsonb): the view is made again after.
    conn.execute(text("DROP VIEW IF EXISTS workflow_jobs"))
    base.metadata.create_all(conn)  # only the missing tables
    _add_missing_columns(conn, base.metadata)
    base.create_view(conn)


def differences(engine: Engine) -> list[Any]:
    """What Alembic's autogenerate finds between core/models.py and the database: empty when
    the revisions and the models agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "target_metadata": SQLModel.metadata}
        )
        return list(compare_metadata(context, SQLModel.metadata))
