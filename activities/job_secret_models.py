"""Input of the `forget_job_secret` activity; a pure model the delivery workflow imports."""

from __future__ import annotations

from pydantic import BaseModel


class ForgetJobSecretInput(BaseModel):
    job_id: str
