"""The `mirror_job` activity: idempotent upsert of the job row from inside the interpreter."""

from __future__ import annotations

import asyncio

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from temporalio import activity

from core.contracts import MIRROR_JOB, MirrorUpdate
from core.db import upsert_job
from core.errors import ErrorContext, ErrorType


class MirrorActivities:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name=MIRROR_JOB)
    async def mirror_job(self, update: MirrorUpdate) -> str:
        try:
            return await asyncio.to_thread(upsert_job, self._engine, update)
        except SQLAlchemyError as exc:
            # Retryable: the interpreter's policy keeps trying until the database is back.
            raise ErrorContext.of(
                ErrorType.DATABASE_ERROR,
                f"mirror write failed: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                retryable=True,
                attempt=activity.info().attempt,
            ).to_application_error() from None
