"""The `raise_alert` activity: store an alert, then tell people about ERROR/CRITICAL ones: a POST
to ALERT_WEBHOOK_URL and, with ALERT_EMAIL_ENABLED, a mail (activities/alert_email.py, sent in
the background so a slow or dead mail server never holds the activity or the job)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from temporalio import activity

from activities.alert_email import AlertMailer
from activities.http_errors import error_for_status, error_for_transport
from core.contracts import RAISE_ALERT, AlertInput
from core.db import insert_alert
from core.models import Alert
from core.redaction import redact, redact_text
from core.settings import Settings

log = logging.getLogger(__name__)
POSTED_LEVELS = frozenset({"ERROR", "CRITICAL"})


class AlertActivities:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        client: httpx.AsyncClient,
        mailer: AlertMailer | None = None,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._client = client
        self.mailer = mailer or AlertMailer(settings)

    @activity.defn(name=RAISE_ALERT)
    async def raise_alert(self, alert: AlertInput) -> None:
        payload: dict[str, Any] = {
            "level": alert.level,
            "source": alert.source,
            "message": redact_text(alert.message, truncate=False)[:2000],
            "job_id": alert.job_id,
            "details": redact(alert.details) if alert.details else None,
        }
        row = Alert(**payload)
        created_at = row.created_at.isoformat()
        # Retried by Temporal until stored: an alert nobody can see is no alert.
        await asyncio.to_thread(insert_alert, self._engine, row)
        level = logging.ERROR if alert.level in POSTED_LEVELS else logging.WARNING
        log.log(level, "alert %s: %s", alert.level, payload["message"])
        # Only once stored (an attempt that failed to store sent nothing), and in the background.
        self.mailer.submit({**payload, "created_at": created_at})
        url = self._settings.alert_webhook_url
        if url and alert.level in POSTED_LEVELS and activity.info().attempt == 1:
            try:
                response = await self._client.post(url, json=payload)
            except httpx.HTTPError as exc:
                log.warning("%s", error_for_transport(exc, what="alert webhook"))
                return
            if response.status_code >= 300:
                err = error_for_status(
                    response.status_code, body=response.text, what="alert webhook"
                )
                log.warning("%s", err)
