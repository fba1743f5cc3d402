"""ERROR and CRITICAL alerts by e-mail, over SMTP (aiosmtplib), off the alert's path.

    mailer = AlertMailer(settings)
    mailer.submit(payload)      # after the alert is stored; returns at once
    await mailer.drain()        # at shutdown (and in tests): wait for the sends in flight

The `raise_alert` activity stores the alert first and only then hands it here, so a mail
server that is down, slow or refusing never fails the activity, delays the job that raised the
alert, or costs the alert its row: a failed send is one WARNING log line, and each send is
bounded by SMTP_TIMEOUT_SECONDS. Sends run as background tasks on the worker's event loop, at
most MAX_IN_FLIGHT at once; past that (a mail server hanging during an alert storm) a mail is
dropped with a log line rather than queued without bound.

Settings: ALERT_EMAIL_ENABLED, ALERT_EMAIL_TO (comma-separated), ALERT_EMAIL_FROM, SMTP_HOST,
SMTP_PORT (587), SMTP_USERNAME, SMTP_PASSWORD, SMTP_STARTTLS (true: STARTTLS is required
before anything is sent, and the server's certificate is verified), SMTP_CA_FILE (extra CAs to
trust), SMTP_TIMEOUT_SECONDS (10). The password lives in the environment only and is one of the
redactor's configured secrets; mails carry the alert as stored, which is already redacted, and
are redacted once more on the way out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib

from core.redaction import redact_text
from core.settings import Settings

log = logging.getLogger(__name__)

MAILED_LEVELS = frozenset({"ERROR", "CRITICAL"})
MAX_IN_FLIGHT = 20
_SUBJECT_CHARS = 150


class AlertMailer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._tasks: set[asyncio.Task[bool]] = set()
        self._tls: ssl.SSLContext | None = None
        self.problem = _config_problem(settings)
        if settings.alert_email_enabled and self.problem:
            log.warning(
                "alert e-mail is enabled but not usable: %s; no mail will be sent", self.problem
            )

    @property
    def enabled(self) -> bool:
        return self._settings.alert_email_enabled and self.problem is None

    def wants(self, level: str) -> bool:
        return self.enabled and level in MAILED_LEVELS

    def submit(self, alert: dict[str, Any]) -> asyncio.Task[bool] | None:
        """Send `alert` (the stored, redacted row: level, source, message, job_id, details) in
        the background when its level is mailed; never raises."""
        if not self.wants(str(alert.get("level"))):
            return None
        if len(self._tasks) >= MAX_IN_FLIGHT:
            log.warning(
                "alert e-mail dropped: %d sends already in flight (is the mail server hanging?)",
                len(self._tasks),
            )
            return None
        task = asyncio.get_running_loop().create_task(self.send(alert), name="alert-email")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, within: float | None = None) -> None:
        """Wait for the sends in flight (each SMTP step is bounded by SMTP_TIMEOUT_SECONDS)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within)

    async def send(self, alert: dict[str, Any]) -> bool:
        """One delivery attempt; True when the server accepted the mail. Never raises."""
        s = self._settings
        try:
            message = self.message(alert)
            password = s.smtp_password.get_secret_value() if s.smtp_password else None
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username or None,
                password=password if s.smtp_username else None,
                start_tls=s.smtp_starttls,
                tls_context=self._tls_context() if s.smtp_starttls else None,
                timeout=s.smtp_timeout_seconds,
            )
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError, ValueError) as exc:
            log.warning(
                "alert e-mail to %s via %s:%s failed (the alert is stored): %s",
                ", ".join(s.alert_email_to),
                s.smtp_host,
                s.smtp_port,
                self._scrub(f"{type(exc).__name__}: {exc}"),
            )
            return False
        except Exception:  # a bug here must not surface anywhere but the log
            log.exception("alert e-mail failed unexpectedly (the alert is stored)")
            return False
        log.info("alert e-mail sent to %s", ", ".join(s.alert_email_to))
        return True

    def message(self, alert: dict[str, Any]) -> EmailMessage:
        s = self._settings
        level = str(alert.get("level") or "ERROR")
        source = str(alert.get("source") or "-")
        text = str(alert.get("message") or "")
        headline = " ".join(text.split())
        if len(headline) > _SUBJECT_CHARS:
            headline = headline[: _SUBJECT_CHARS - 1] + "…"
        lines = [
            f"llmflow raised a {level} alert.",
            "",
            f"Level:  {level}",
            f"Source: {source}",
            f"Job:    {alert.get('job_id') or '-'}",
            f"Time:   {alert.get('created_at') or formatdate(usegmt=True)}",
            "",
            text,
        ]
        details = alert.get("details")
        if details:
            lines += [
                "",
                "Details:",
                json.dumps(details, indent=2, ensure_ascii=False, default=str),
            ]
        lines += [
            "",
            "All alerts: GET /api/v1/alerts (this one: ?source=" + source + ").",
        ]
        msg = EmailMessage()
        msg["Subject"] = self._scrub(f"[llmflow] {level} {source}: {headline}")
        msg["From"] = s.alert_email_from or ""
        msg["To"] = ", ".join(s.alert_email_to)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = make_msgid(domain="llmflow")
        msg["X-Llmflow-Alert-Level"] = level
        msg.set_content(self._scrub("\n".join(lines)))
        return msg

    def _scrub(self, text: str) -> str:
        password = self._settings.smtp_password
        extra = [password.get_secret_value()] if password else []
        return redact_text(text, extra_secrets=extra, truncate=False)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            ca = self._settings.smtp_ca_file
            self._tls = ssl.create_default_context(cafile=str(ca) if ca else None)
        return self._tls


def _config_problem(settings: Settings) -> str | None:
    missing = [
        name
        for name, value in (
            ("SMTP_HOST", settings.smtp_host),
            ("ALERT_EMAIL_TO", settings.alert_email_to),
            ("ALERT_EMAIL_FROM", settings.alert_email_from),
        )
        if not value
    ]
    if missing:
        return f"set {', '.join(missing)}"
    if settings.smtp_username and not settings.smtp_password:
        return "SMTP_USERNAME is set without SMTP_PASSWORD"
    return None
