"""What the inbound-webhook endpoints do: authenticate an event, match it to
triggers, and start each matched workflow through the same path as POST /jobs.

Delivery guarantees: an event is answered 202 only after Temporal accepted every start it
causes (otherwise 503, so the sender retries), and each start's job id is derived from
(source, trigger, raw body), so a redelivered identical body finds the job it already started.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api import job_service
from api.schemas import JobCreate
from api.temporal_link import TemporalLink
from core import db
from core.models import Alert
from core.redaction import redact, redact_text
from core.settings import Settings
from core.webhook_signing import verify_hex_signature
from workflow_defs.catalog import Catalog
from workflow_defs.inputs import InputError, validate_input
from workflow_defs.loader import DefinitionRegistry
from workflow_defs.references import Resolver
from workflow_defs.triggers import STRAPI, TRIGGERS_FILE, Trigger, TriggerConfig, load_triggers

log = logging.getLogger(__name__)
ALERT_SOURCE = "inbound_webhook"
SIGNATURE_HEADER = "X-Webhook-Signature"
EVENT_HEADER = "X-Webhook-Event"
# What the integration layer's own Strapi handler read, and what its clients still send: a bare
# hex HMAC-SHA256 of the raw body, and the event and content type as headers when the body
# lacks them.
STRAPI_SIGNATURE_HEADER = "X-Strapi-Signature"
STRAPI_EVENT_HEADER = "X-Strapi-Event"
STRAPI_ENTITY_HEADER = "X-Strapi-Entity"


# ---- response bodies ------------------------------------------------------------------------


class StartedJob(BaseModel):
    job_id: str
    workflow_name: str
    workflow_version: str
    trigger: str
    replayed: bool = False  # a delivery of this same body already started it


class WebhookAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "accepted": True,
                    "started": [
                        {
                            "job_id": "0d6f3f9e-6a43-5a8e-b1f4-3f3c0a2f8d11",
                            "workflow_name": "quickstart",
                            "workflow_version": "1.0.0",
                            "trigger": "article-published-explainer",
                            "replayed": False,
                        }
                    ],
                },
                {"accepted": True, "started": []},
            ]
        }
    )

    accepted: Literal[True] = True
    started: list[StartedJob]


# ---- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceCredentials:
    # repr=False: these are secrets, and dataclasses print their fields.
    secret: str | None = field(default=None, repr=False)  # HMAC key for X-Webhook-Signature
    token: str | None = field(default=None, repr=False)  # static bearer token

    @property
    def configured(self) -> bool:
        return bool(self.secret or self.token)


# Rejected-credential alerts: at most one row per (source, reason) per window, however many
# requests a sender (or anyone who adds an X-Webhook-Signature header) makes.
REJECTION_WINDOW_SECONDS = 60.0
# How long later rejections wait before their count is written to the window's row: one UPDATE per
# second at most, instead of one write per rejected request.
REJECTION_FLUSH_SECONDS = 1.0


@dataclass(eq=False)
class _RejectionWindow:
    source: str
    reason: str
    started: float
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    count: int = 1
    written: int = 0  # the count the alert row holds
    alert_id: int | None = None
    flushing: bool = False  # a delayed write is scheduled
    last_seen: str = ""
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RejectionAlerts:
    """Folds rejected inbound requests into one alert row per (source, reason) and window.

    The first rejection of a window inserts the row (count 1); the next ones only increment the
    count, which a delayed write stores in the row's details and message, so a flood of forged
    requests costs one INSERT plus about one UPDATE a second. The next rejection after the window
    closes starts a new row. Each rejection is still logged. Per process: every gateway replica
    raises at most one row per window of its own.
    """

    def __init__(
        self,
        window_seconds: float = REJECTION_WINDOW_SECONDS,
        flush_seconds: float = REJECTION_FLUSH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_seconds = window_seconds
        self.flush_seconds = flush_seconds
        self._clock = clock
        # A thread lock, never held across an await: each count-and-decide step is atomic for
        # concurrent requests, even if they are ever served from more than one thread.
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], _RejectionWindow] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _count(
        self, source: str, reason: str
    ) -> tuple[_RejectionWindow, bool, _RejectionWindow | None]:
        """Count one rejection: (its window, whether it opens that window and so needs a new
        row, the window it closes when that one's count is not in its row yet)."""
        now = self._clock()
        with self._lock:
            current = self._windows.get((source, reason))
            if current is None or now - current.started >= self.window_seconds:
                closed = current if current and current.count != current.written else None
                current = _RejectionWindow(source, reason, started=now, last_seen=_now_iso())
                self._windows[(source, reason)] = current
                return current, True, closed
            current.count += 1
            current.last_seen = _now_iso()
            return current, False, None

    async def record(
        self,
        engine: Engine,
        source: str,
        reason: str,
        details: dict[str, Any],
        *,
        secrets: list[str],
    ) -> None:
        window, first, closed = self._count(source, reason)
        if not first:
            self._schedule_flush(engine, window)
            return
        if closed is not None:  # its final count, before the next row appears
            await self._write_count(engine, closed)
        window.message = redact_text(
            f"rejected inbound webhook for source {source!r}: {reason}",
            extra_secrets=secrets,
            truncate=False,
        )[:1900]
        window.details = redact(
            {**details, "window_seconds": self.window_seconds}, extra_secrets=secrets
        )
        alert = Alert(
            level="WARNING",
            source=ALERT_SOURCE,
            message=window.message,
            details={**window.details, "count": 1, "last_seen": window.last_seen},
        )
        log.warning("alert WARNING: %s", alert.message)
        try:
            alert_id = await asyncio.to_thread(_insert_alert_returning_id, engine, alert)
        except Exception as exc:
            log.warning("could not store the inbound-webhook alert: %s", type(exc).__name__)
            return
        with self._lock:
            window.alert_id, window.written = alert_id, 1
        self._schedule_flush(engine, window)  # rejections counted while the row was inserted

    def _schedule_flush(self, engine: Engine, window: _RejectionWindow) -> None:
        with self._lock:
            if window.alert_id is None or window.flushing or window.count == window.written:
                return
            window.flushing = True
        task = asyncio.get_running_loop().create_task(self._flush_later(engine, window))
        self._tasks.add(task)  # the loop only keeps weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _flush_later(self, engine: Engine, window: _RejectionWindow) -> None:
        try:
            while True:
                await asyncio.sleep(self.flush_seconds)
                await self._write_count(engine, window)
                with self._lock:
                    # Checked and cleared under the lock, so a rejection counted now either is
                    # written by this loop or schedules the next one.
                    if window.count == window.written:
                        window.flushing = False
                        return
        except BaseException:
            with self._lock:
                window.flushing = False
            raise

    async def _write_count(self, engine: Engine, window: _RejectionWindow) -> None:
        # One writer per row at a time, each writing the newest count: a slow UPDATE can't land
        # after a newer one and leave the row behind.
        async with window.write_lock:
            with self._lock:
                count, alert_id, seen = window.count, window.alert_id, window.last_seen
            if alert_id is None or count == window.written:
                return
            message = f"{window.message} ({count} rejected within {self.window_seconds:g} s)"
            details = {**window.details, "count": count, "last_seen": seen}
            try:
                await asyncio.to_thread(_update_alert, engine, alert_id, message, details)
            except Exception as exc:
                log.warning("could not update the inbound-webhook alert: %s", type(exc).__name__)
                return
            with self._lock:
                window.written = max(window.written, count)

    async def flush(self, engine: Engine) -> None:
        """Write every pending count now (shutdown, tests)."""
        with self._lock:
            windows = list(self._windows.values())
        for window in windows:
            await self._write_count(engine, window)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _insert_alert_returning_id(engine: Engine, alert: Alert) -> int | None:
    with Session(engine, expire_on_commit=False) as session:
        session.add(alert)
        session.commit()
        return alert.id


def _update_alert(engine: Engine, alert_id: int, message: str, details: dict[str, Any]) -> None:
    with Session(engine) as session:
        row = session.get(Alert, alert_id)
        if row is None:  # pruned meanwhile: nothing left to update
            return
        row.message = message[:2000]
        row.details = details  # a new dict: the JSON column only sees reassignment
        session.add(row)
        session.commit()


@dataclass
class InboundConfig:
    triggers: TriggerConfig = field(default_factory=TriggerConfig)
    credentials: dict[str, SourceCredentials] = field(default_factory=dict)
    rejections: RejectionAlerts = field(default_factory=RejectionAlerts, repr=False, compare=False)

    def secrets(self) -> list[str]:
        return [v for c in self.credentials.values() for v in (c.secret, c.token) if v]


def load_inbound(
    settings: Settings, definitions: DefinitionRegistry, *, env: Mapping[str, str] | None = None
) -> InboundConfig:
    """Load triggers.json (raises TriggerConfigError naming the file and JSON path) and read each
    source's credentials once: strapi from Settings, others from the env vars triggers.json
    names (the process environment, then `.env`, as Settings does)."""
    triggers = load_triggers(settings.workflow_defs_dir / TRIGGERS_FILE, definitions)
    if env is None:
        env_file = settings.model_config.get("env_file")
        from_file = dotenv_values(env_file) if isinstance(env_file, str) else {}
        env = {**{k: v for k, v in from_file.items() if v is not None}, **os.environ}
    credentials = {
        STRAPI: SourceCredentials(
            settings.strapi_webhook_secret or None, settings.strapi_webhook_token or None
        )
    }
    for name, source in triggers.sources.items():
        credentials[name] = SourceCredentials(
            (env.get(source.secret_env) or None) if source.secret_env else None,
            (env.get(source.token_env) or None) if source.token_env else None,
        )
    return InboundConfig(triggers, credentials)


# ---- errors the router maps to status codes ---------------------------------------------------


class UnknownSource(LookupError):  # 404
    pass


class NotConfigured(RuntimeError):  # 503: refuse rather than accept unauthenticated events
    pass


class Unauthorized(PermissionError):  # 401; str() is the answer's detail
    pass


class BadBody(ValueError):  # 400 (not JSON) or 422 (JSON, wrong shape)
    def __init__(self, status: int, detail: list[dict[str, Any]]) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail


class MappedInputInvalid(ValueError):  # 422: a retry would fail the same way
    def __init__(self, detail: list[dict[str, Any]]) -> None:
        super().__init__(str(detail))
        self.detail = detail


# ---- the steps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    reason: str  # for the log and the alert: may say what the gateway has configured
    public: str  # for the 401 answer: names what failed, never the configuration


def _bearer(authorization: str | None) -> str:
    if not authorization:
        return ""
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def check_credentials(
    creds: SourceCredentials,
    body: bytes,
    signatures: Mapping[str, str | None],
    authorization: str | None,
) -> Rejection | None:
    """None when the request is authentic, else why not (never echoing what was presented).

    `signatures` maps each signature header the route reads to its value (None when absent);
    any one that verifies is enough. Every check runs, each in constant time, so timing
    doesn't tell which one failed.
    """
    sent = {name: value for name, value in signatures.items() if value}
    sig_ok = [verify_hex_signature(creds.secret or "", body, value) for value in sent.values()]
    presented = _bearer(authorization)
    token_ok = hmac.compare_digest(presented.encode(), (creds.token or "").encode()) and bool(
        creds.token and presented
    )
    if any(sig_ok) or token_ok:
        return None
    headers = " and ".join(sent)
    mismatch = (
        f"{headers} {'does' if len(sent) == 1 else 'do'} not match the HMAC-SHA256 of the body"
    )
    if sent and presented:
        return Rejection(
            "bad signature and bad bearer token",
            f"{mismatch}, and the bearer token does not match",
        )
    if sent:
        reason = "bad signature" if creds.secret else "signature sent but no secret is configured"
        return Rejection(reason, mismatch)
    if presented:
        reason = "bad bearer token" if creds.token else "token sent but no token is configured"
        return Rejection(reason, "the Authorization bearer token does not match")
    names = " or ".join(signatures) or SIGNATURE_HEADER
    if authorization:
        return Rejection(
            "authorization is not a bearer token",
            f"the Authorization header is not 'Bearer <token>', and no {names} was sent",
        )
    return Rejection(
        f"no {names} or Authorization: Bearer header",
        f"no credentials: send {names} (HMAC-SHA256 of the raw body) or "
        "Authorization: Bearer <token>",
    )


def idempotency_key(source: str, trigger: Trigger, body: bytes) -> str:
    """Same source + trigger + raw body → same key → same job id (redeliveries dedupe)."""
    digest = hashlib.sha256(f"{source}\n{trigger.key}\n".encode())
    digest.update(body)
    return "event:" + digest.hexdigest()


def principal_for(source: str) -> str:
    return f"webhook:{source}"


def event_job_id(source: str, trigger: Trigger, body: bytes) -> str:
    return job_service.job_id_for(principal_for(source), idempotency_key(source, trigger, body))


@dataclass(frozen=True)
class ParsedEvent:
    payload: dict[str, Any]
    event: str
    model: str | None

    def namespace(self) -> dict[str, Any]:
        """What trigger inputs resolve against: the body, with the event and content type
        filled in where they came from a header or a synonym (`${event}`, `${model}` and
        `${entity}` always read them)."""
        out = dict(self.payload)
        out["event"] = self.event
        if self.model is not None:
            for key in ("model", "entity"):
                if not isinstance(out.get(key), str) or not out[key]:
                    out[key] = self.model
        return out


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def parse_body(
    body: bytes, *, source: str = "", headers: Mapping[str, str | None] | None = None
) -> ParsedEvent:
    """The event's payload, name and content type.

    `headers` are the ones the route reads, by name (None when not sent). The name is the
    body's `event`, else X-Strapi-Event, else X-Webhook-Event. The content type is the body's
    `model`, else its `entity` (the integration layer's word), else X-Strapi-Entity; a Strapi
    `entry.*` event must have one (Strapi always sends it), other events may go without.
    """
    headers = headers or {}
    try:
        payload = json.loads(body)
    except ValueError as exc:
        pos = getattr(exc, "pos", 0)
        raise BadBody(
            400,
            [
                {
                    "type": "json_invalid",
                    "loc": ["body", pos],
                    "msg": "JSON decode error",
                    "ctx": {"error": getattr(exc, "msg", "not UTF-8 JSON")},
                }
            ],
        ) from None
    if not isinstance(payload, dict):
        raise BadBody(
            422, [{"type": "dict_type", "loc": ["body"], "msg": "the event must be a JSON object"}]
        )
    event_headers = [h for h in (STRAPI_EVENT_HEADER, EVENT_HEADER) if h in headers]
    event = _text(payload.get("event")) or next(
        (value for h in event_headers if (value := _text(headers.get(h)))), ""
    )
    if not event:
        named = " or ".join(event_headers or [EVENT_HEADER])
        raise BadBody(
            422,
            [
                {
                    "type": "missing",
                    "loc": ["body", "event"],
                    "msg": f"the event needs an 'event' name in the body (or an {named} header)",
                }
            ],
        )
    model = (
        _text(payload.get("model"))
        or _text(payload.get("entity"))
        or _text(headers.get(STRAPI_ENTITY_HEADER))
    )
    if not model and source == STRAPI and event.startswith("entry."):
        raise BadBody(
            422,
            [
                {
                    "type": "missing",
                    "loc": ["body", "model"],
                    "msg": (
                        f"a Strapi {event} event needs its content type: 'model' (or 'entity') "
                        f"in the body, or an {STRAPI_ENTITY_HEADER} header"
                    ),
                }
            ],
        )
    return ParsedEvent(payload, event, model or None)


async def raise_alert(
    engine: Engine, message: str, details: dict[str, Any], *, secrets: list[str]
) -> None:
    """Store a WARNING alert; a database outage must not change the answer, so it only logs."""
    alert = Alert(
        level="WARNING",
        source=ALERT_SOURCE,
        message=redact_text(message, extra_secrets=secrets, truncate=False)[:2000],
        details=redact(details, extra_secrets=secrets),
    )
    log.warning("alert WARNING: %s", alert.message)
    try:
        await asyncio.to_thread(db.insert_alert, engine, alert)
    except Exception as exc:
        log.warning("could not store the inbound-webhook alert: %s", type(exc).__name__)


async def authenticate_event(
    source: str,
    body: bytes,
    *,
    signatures: Mapping[str, str | None],
    authorization: str | None,
    inbound: InboundConfig,
    engine: Engine,
    client_host: str | None,
) -> None:
    if not inbound.triggers.knows_source(source):
        raise UnknownSource(f"unknown webhook source {source!r}")
    creds = inbound.credentials.get(source, SourceCredentials())
    if not creds.configured:
        what = (
            "STRAPI_WEBHOOK_SECRET or STRAPI_WEBHOOK_TOKEN"
            if source == STRAPI
            else "the secret_env/token_env it names in triggers.json"
        )
        raise NotConfigured(f"inbound webhooks not configured for {source!r} (set {what})")
    rejection = check_credentials(creds, body, signatures, authorization)
    if rejection is None:
        return
    reason = rejection.reason
    log.warning("inbound webhook for %s rejected: %s (client %s)", source, reason, client_host)
    if any(signatures.values()) or authorization:
        # A wrong credential is a misconfigured sender or someone probing: worth an alert, but
        # anyone can send a header, so rejections fold into one row per source, reason and window.
        # Bare unauthenticated requests are only logged.
        await inbound.rejections.record(
            engine,
            source,
            reason,
            {
                "source": source,
                "reason": reason,
                "client": client_host,
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "body_bytes": len(body),
            },
            secrets=inbound.secrets(),
        )
    raise Unauthorized(rejection.public)


def _mapped_inputs(
    triggers: list[Trigger], namespace: dict[str, Any], catalog: Catalog
) -> tuple[list[JobCreate], list[dict[str, Any]]]:
    """Resolve every matched trigger's input and validate it up front, so an event either starts
    all of its jobs or none (a partial start answered 422 would never be completed)."""
    bodies: list[JobCreate] = []
    problems: list[dict[str, Any]] = []
    for trigger in triggers:
        resolver = Resolver(namespace)
        input_data = resolver.resolve(trigger.input)
        loaded = catalog.definitions.get(trigger.workflow, trigger.version)
        try:
            if loaded is None:  # triggers.json is checked against this catalog at start
                raise InputError([("", f"workflow {trigger.workflow!r} is not loaded")])
            validate_input(loaded.definition, input_data)
        except InputError as exc:
            for name, msg in exc.errors:
                problems.append(
                    {
                        "type": "value_error",
                        "loc": ["trigger", trigger.label, "input", *filter(None, name.split("."))],
                        "msg": msg,
                        "ctx": {"workflow": trigger.workflow, "warnings": resolver.warnings},
                    }
                )
            continue
        bodies.append(
            JobCreate(
                workflow_name=trigger.workflow,
                workflow_version=trigger.version,
                input_data=input_data,
            )
        )
    return bodies, problems


async def start_triggered_jobs(
    source: str,
    body: bytes,
    *,
    headers: Mapping[str, str | None] | None = None,
    inbound: InboundConfig,
    settings: Settings,
    engine: Engine,
    catalog: Catalog,
    temporal: TemporalLink,
) -> WebhookAccepted:
    """For an authenticated body: start every matching trigger's workflow (idempotently).
    `headers` are the event/content-type headers the route reads (see parse_body)."""
    parsed = parse_body(body, source=source, headers=headers)
    event, model = parsed.event, parsed.model
    matched = inbound.triggers.matching(source, event, model)
    if not matched:
        log.info("inbound %s event %s (%s): no trigger matches; acknowledged", source, event, model)
        return WebhookAccepted(started=[])
    jobs, problems = _mapped_inputs(matched, parsed.namespace(), catalog)
    if problems:
        await raise_alert(
            engine,
            f"inbound {source} event {event!r} (model {model!r}) maps to invalid workflow input; "
            "nothing was started",
            {"source": source, "event": event, "model": model, "errors": problems},
            secrets=inbound.secrets(),
        )
        raise MappedInputInvalid(problems)
    started: list[StartedJob] = []
    # One at a time: on a 503 the sender retries, and the starts already made are found again.
    for trigger, job in zip(matched, jobs, strict=True):
        try:
            result = await job_service.submit_job(
                job,
                settings=settings,
                engine=engine,
                catalog=catalog,
                temporal=temporal,
                principal=principal_for(source),
                idempotency_key=idempotency_key(source, trigger, body),
            )
        except job_service.UnstorableValues as exc:
            raise MappedInputInvalid(
                [
                    {"type": "value_error", "loc": ["trigger", trigger.label, *path], "msg": msg}
                    for path, msg in exc.problems
                ]
            ) from None
        started.append(
            StartedJob(
                job_id=result.accepted.job_id,
                workflow_name=result.accepted.workflow_name,
                workflow_version=result.accepted.workflow_version,
                trigger=trigger.label,
                replayed=result.replayed,
            )
        )
    log.info(
        "inbound %s event %s (%s) → %s",
        source,
        event,
        model,
        ", ".join(
            f"{s.workflow_name} {s.job_id}{' (replayed)' if s.replayed else ''}" for s in started
        ),
    )
    return WebhookAccepted(started=started)
