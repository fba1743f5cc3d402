"""Alerts by e-mail, against a real SMTP server the test starts (aiosmtpd, in a thread of its own)
that requires STARTTLS (a self-signed certificate the client is told to trust through
SMTP_CA_FILE) and AUTH.

- An ERROR alert, raised by a job that fails on a missing key through the real worker, arrives as
  a mail naming the alert; secrets in an alert never reach the mail.
- WARNING and INFO alerts send nothing.
- With the mail server down, refusing or hanging, the alert is still stored, the activity
  returns at once and nothing raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email
import ipaddress
import json
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from email.message import Message
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy.engine import Engine
from sqlmodel import Session as DbSession
from sqlmodel import select
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.alert_email import AlertMailer
from activities.alerts import AlertActivities
from core.contracts import AlertInput
from core.models import Alert
from core.settings import Settings
from tests import harness
from workflow_defs.catalog import load_catalog

SMTP_USER = "alerts@llmflow.test"
SMTP_PASSWORD = "smtp-password-3f9a1c77e0"
LEAKED_KEY = "sk-or-v1-leakedkey0123456789abcdef"
TO = ["oncall@example.test", "lead@example.test"]
FROM = "llmflow <alerts@llmflow.test>"


# -- a real SMTP server -------------------------------------------------------------------------


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp.crt", directory / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Inbox:
    """The aiosmtpd handler: keeps every accepted mail and who logged in to send it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mails: list[tuple[Envelope, bytes]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        with self.lock:
            self.mails.append((envelope, content))
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == SMTP_USER
            and data.password.decode() == SMTP_PASSWORD
        )
        if ok:
            with self.lock:
                self.logins.append(SMTP_USER)
        return AuthResult(success=ok)

    def messages(self) -> list[Message]:
        with self.lock:
            return [email.message_from_bytes(raw, policy=default_policy) for _, raw in self.mails]


@pytest.fixture(scope="module")
def smtp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Inbox, int, Path]]:
    import ssl

    cert, key = _self_signed(tmp_path_factory.mktemp("smtp-tls"))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    inbox = Inbox()
    port = _free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        server_hostname="localhost",
        tls_context=tls,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=inbox.authenticate,
    )
    controller.start()
    try:
        yield inbox, port, cert
    finally:
        controller.stop()


@pytest.fixture
def inbox(smtp_server: tuple[Inbox, int, Path]) -> Inbox:
    box = smtp_server[0]
    with box.lock:
        box.mails.clear()
        box.logins.clear()
    return box


def mail_settings(settings: Settings, smtp: tuple[Inbox, int, Path], **overrides: Any) -> Settings:
    _, port, cert = smtp
    values: dict[str, Any] = {
        "alert_email_enabled": True,
        "alert_email_to": TO,
        "alert_email_from": FROM,
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_username": SMTP_USER,
        "smtp_password": SMTP_PASSWORD,
        "smtp_starttls": True,
        "smtp_ca_file": cert,
        "smtp_timeout_seconds": 5.0,
        **overrides,
    }
    return Settings(**{**settings.model_dump(), **values})


def stored(engine: Engine, **where: Any) -> list[Alert]:
    with DbSession(engine) as session:
        query = select(Alert)
        for field, value in where.items():
            query = query.where(getattr(Alert, field) == value)
        return list(session.exec(query).all())


async def raise_alert(acts: AlertActivities, **fields: Any) -> None:
    await ActivityEnvironment().run(acts.raise_alert, AlertInput(**fields))


@contextlib.asynccontextmanager
async def activities(settings: Settings, engine: Engine) -> Any:
    async with httpx.AsyncClient() as client:
        yield AlertActivities(settings, engine, client)


async def wait_for_mails(box: Inbox, count: int, within: float = 20) -> list[Message]:
    deadline = asyncio.get_running_loop().time() + within
    while len(box.messages()) < count:
        assert asyncio.get_running_loop().time() < deadline, f"{len(box.messages())} mails"
        await asyncio.sleep(0.05)
    return box.messages()


def raw_text(box: Inbox) -> str:
    with box.lock:
        return "\n".join(raw.decode("utf-8", "replace") for _, raw in box.mails)


# -- tests --------------------------------------------------------------------------------------


async def test_a_failed_jobs_error_alert_arrives_by_mail(
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    smtp_server: tuple[Inbox, int, Path],
    inbox: Inbox,
) -> None:
    # No LLM key outside development: the step fails with a CONFIG_ERROR, which is an ERROR alert.
    cfg = mail_settings(settings, smtp_server, openrouter_api_key=None)
    loaded = load_catalog(cfg).definitions.get("quickstart")
    assert loaded is not None
    async with harness.running_worker(temporal_client, cfg, engine):
        handle, failure = await harness.run_failing(
            temporal_client, cfg, loaded, {"topic": "alerts"}
        )
        assert "OPENROUTER_API_KEY" in str(failure.cause)
        [mail] = await wait_for_mails(inbox, 1)
    job_id = handle.id
    [row] = stored(engine, job_id=job_id)
    assert row.level == "ERROR" and row.source == "job"
    assert mail["Subject"].startswith("[llmflow] ERROR job: quickstart 1.0.0 job")
    assert job_id in mail["Subject"]
    assert mail["From"] == FROM and mail["To"] == ", ".join(TO)
    body = mail.get_content()
    assert f"Job:    {job_id}" in body and "OPENROUTER_API_KEY" in body
    assert row.message in body
    [(envelope, _)] = inbox.mails
    assert sorted(envelope.rcpt_tos) == sorted(TO)
    assert inbox.logins == [SMTP_USER]  # AUTH, which the server only allows after STARTTLS
    assert SMTP_PASSWORD not in raw_text(inbox)


async def test_secrets_in_an_alert_never_reach_the_mail(
    settings: Settings,
    engine: Engine,
    smtp_server: tuple[Inbox, int, Path],
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = "strapi-token-for-mail-test-9d8c7b6a"
    monkeypatch.setenv("STRAPI_API_TOKEN", token)
    cfg = mail_settings(settings, smtp_server)
    source = f"test-{uuid.uuid4().hex[:10]}"
    async with activities(cfg, engine) as acts:
        await raise_alert(
            acts,
            level="CRITICAL",
            source=source,
            message=f"strapi answered 401 for token {token} (smtp {SMTP_PASSWORD}, key {LEAKED_KEY})",
            job_id="job-secret-check",
            details={"api_key": LEAKED_KEY, "echo": token.upper(), "note": "kept"},
        )
        await acts.mailer.drain()
    [mail] = inbox.messages()
    assert mail["Subject"].startswith(f"[llmflow] CRITICAL {source}: strapi answered 401")
    raw = raw_text(inbox)
    for secret in (token, token.upper(), SMTP_PASSWORD, LEAKED_KEY):
        assert secret not in raw
    assert "[REDACTED]" in raw and "kept" in raw and "job-secret-check" in raw
    assert len(stored(engine, source=source)) == 1


@pytest.mark.parametrize("level", ["WARNING", "INFO"])
async def test_warning_and_info_alerts_send_no_mail(
    level: str,
    settings: Settings,
    engine: Engine,
    smtp_server: tuple[Inbox, int, Path],
    inbox: Inbox,
) -> None:
    cfg = mail_settings(settings, smtp_server)
    source = f"test-{uuid.uuid4().hex[:10]}"
    async with activities(cfg, engine) as acts:
        await raise_alert(acts, level=level, source=source, message="breaker opened")
        assert not acts.mailer.wants(level)
        await acts.mailer.drain()
    assert inbox.messages() == []
    assert [a.level for a in stored(engine, source=source)] == [level]


async def _silent_listener() -> tuple[asyncio.Server, int]:
    """Accepts connections and never says a word (a hung mail server)."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


@pytest.mark.parametrize("outage", ["refused", "hanging", "no_starttls_trust"])
async def test_mail_server_trouble_keeps_the_alert_and_raises_nothing(
    outage: str,
    settings: Settings,
    engine: Engine,
    smtp_server: tuple[Inbox, int, Path],
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="activities.alert_email")
    server = None
    if outage == "refused":
        overrides: dict[str, Any] = {"smtp_port": _free_port()}
    elif outage == "hanging":
        server, port = await _silent_listener()
        overrides = {"smtp_port": port, "smtp_timeout_seconds": 0.5}
    else:  # the certificate is not trusted: no mail goes out in clear instead
        overrides = {"smtp_ca_file": None}
    cfg = mail_settings(settings, smtp_server, **overrides)
    source = f"test-{uuid.uuid4().hex[:10]}"
    try:
        async with activities(cfg, engine) as acts:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await raise_alert(acts, level="ERROR", source=source, message="webhook gave up")
            assert loop.time() - started < 0.5  # the activity never waits for the mail server
            await acts.mailer.drain(within=10)
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()
    assert [a.level for a in stored(engine, source=source)] == ["ERROR"]
    assert inbox.messages() == []
    failures = [r for r in caplog.records if "alert e-mail" in r.getMessage()]
    assert len(failures) == 1 and "the alert is stored" in failures[0].getMessage()
    assert SMTP_PASSWORD not in caplog.text


def test_enabled_without_a_server_is_one_warning_and_no_sends(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="activities.alert_email")
    cfg = Settings(**{**settings.model_dump(), "alert_email_enabled": True, "smtp_host": None})
    mailer = AlertMailer(cfg)
    assert not mailer.enabled and not mailer.wants("CRITICAL")
    assert mailer.problem == "set SMTP_HOST, ALERT_EMAIL_TO, ALERT_EMAIL_FROM"
    assert "not usable" in caplog.text
    off = AlertMailer(settings)
    assert not off.enabled and off.submit({"level": "ERROR"}) is None


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "ALERT_EMAIL_ENABLED": "true",
        "ALERT_EMAIL_TO": "a@example.test, b@example.test",
        "ALERT_EMAIL_FROM": "llmflow@example.test",
        "SMTP_HOST": "mail.example.test",
        "SMTP_PORT": "2525",
        "SMTP_USERNAME": "u",
        "SMTP_PASSWORD": SMTP_PASSWORD,
        "SMTP_STARTTLS": "false",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cfg = Settings(_env_file=None)  # type: ignore[call-arg]
    assert cfg.alert_email_enabled and cfg.alert_email_to == ["a@example.test", "b@example.test"]
    assert (cfg.smtp_host, cfg.smtp_port, cfg.smtp_starttls) == ("mail.example.test", 2525, False)
    assert cfg.smtp_password is not None and cfg.smtp_password.get_secret_value() == SMTP_PASSWORD
    assert SMTP_PASSWORD not in repr(cfg) and SMTP_PASSWORD not in json.dumps(
        cfg.model_dump(mode="json"), default=str
    )
