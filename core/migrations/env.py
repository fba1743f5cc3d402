"""Alembic environment of the mirror database: the revisions in versions/ against the SQLModel
tables of core/models.py.

core/schema_migrations.py runs it with an open connection (config.attributes["connection"]),
already in a transaction and holding the schema lock, so every revision of one upgrade commits
together with the version stamp. Run by the `alembic` command (alembic.ini, to autogenerate a new
revision) it connects to DATABASE_URL itself.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import core.models  # noqa: F401  (declares the tables on SQLModel.metadata)
from core.db import make_engine
from core.settings import get_settings

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        compare_type=True,
        # SQLite alters a table by copying it: autogenerate writes batch operations for it.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; use `llmflow db upgrade`")

given = config.attributes.get("connection")
if given is not None:
    run_migrations(given)
else:
    engine = make_engine(get_settings().database_url)
    try:
        with engine.begin() as conn:
            run_migrations(conn)
    finally:
        engine.dispose()
