"""`forget_job_secret`: a job's stored webhook secret is deleted once its completion delivery
has ended (delivered or given up), so a secret at rest lives no longer than it is needed."""

from __future__ import annotations

import asyncio

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session
from temporalio import activity

from activities.job_secret_models import ForgetJobSecretInput
from core.contracts import FORGET_JOB_SECRET
from core.errors import ErrorContext, ErrorType
from core.models import JobSecret


def delete_job_secret(engine: Engine, job_id: str) -> bool:
    """Whether there was a row to delete."""
    with Session(engine) as session:
        row = session.get(JobSecret, job_id)
        if row is None:
            return False
        session.delete(row)
        session.commit()
        return True


class JobSecretActivities:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name=FORGET_JOB_SECRET)
    async def forget_job_secret(self, input: ForgetJobSecretInput) -> bool:
        try:
            return await asyncio.to_thread(delete_job_secret, self._engine, input.job_id)
        except SQLAlchemyError as exc:
            raise ErrorContext.of(
                ErrorType.DATABASE_ERROR,
                f"could not delete the job's webhook secret: {type(exc).__name__}",
                retryable=True,
            ).to_application_error() from None
