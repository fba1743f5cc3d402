"""What the inbound-webhook endpoints do (DESIGN §6.2): authenticate an event, match it to
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Engine

from activities.webhook_signing import verify_hex_signature
from api import job_service
from api.schemas import JobCreate
from api.temporal_link import TemporalLink
from core import db
from core.models import Alert
from core.redaction import redact, redact_text
from core.settings import Settings
from workflow_defs.catalog import Catalog
from workflow_defs.inputs import InputError, validate_input
from workflow_defs.loader import DefinitionRegistry
from workflow_defs.references import Resolver
from workflow_defs.triggers import STRAPI, TRIGGERS_FILE, Trigger, TriggerConfig, load_triggers

log = logging.getLogger(__name__)
ALERT_SOURCE = "inbound_webhook"
SIGNATURE_HEADER = "X-Webhook-Signature"
EVENT_HEADER = "X-Webhook-Event"


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


@dataclass
class InboundConfig:
    triggers: TriggerConfig = field(default_factory=TriggerConfig)
    credentials: dict[str, SourceCredentials] = field(default_factory=dict)

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


class Unauthorized(PermissionError):  # 401
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


def check_credentials(
    creds: SourceCredentials, body: bytes, signature: str | None, authorization: str | None
) -> str | None:
    """None when the request is authentic, else why not (never echoing what was presented).

    Both checks always run, each in constant time, so timing doesn't tell which one failed.
    """
    sig_ok = verify_hex_signature(creds.secret or "", body, signature)
    presented = ""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer":
            presented = value.strip()
    token_ok = hmac.compare_digest(presented.encode(), (creds.token or "").encode()) and bool(
        creds.token and presented
    )
    if sig_ok or token_ok:
        return None
    if signature and presented:
        return "bad signature and bad bearer token"
    if signature:
        return "bad signature" if creds.secret else "signature sent but no secret is configured"
    if presented:
        return "bad bearer token" if creds.token else "token sent but no token is configured"
    return "no X-Webhook-Signature or Authorization: Bearer header"


def idempotency_key(source: str, trigger: Trigger, body: bytes) -> str:
    """Same source + trigger + raw body → same key → same job id (redeliveries dedupe)."""
    digest = hashlib.sha256(f"{source}\n{trigger.key}\n".encode())
    digest.update(body)
    return "event:" + digest.hexdigest()


def principal_for(source: str) -> str:
    return f"webhook:{source}"


def event_job_id(source: str, trigger: Trigger, body: bytes) -> str:
    return job_service.job_id_for(principal_for(source), idempotency_key(source, trigger, body))


def parse_body(body: bytes, event_header: str | None) -> tuple[dict[str, Any], str, str | None]:
    """(payload, event, model). The event is the body's `event`, else the X-Webhook-Event
    header (for senders that put it there); `model` is optional (Strapi's content type)."""
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
    event = payload.get("event")
    if not isinstance(event, str) or not event:
        event = event_header.strip() if event_header else ""
    if not event:
        raise BadBody(
            422,
            [
                {
                    "type": "missing",
                    "loc": ["body", "event"],
                    "msg": f"the event needs an 'event' name (or an {EVENT_HEADER} header)",
                }
            ],
        )
    model = payload.get("model")
    return payload, event, model if isinstance(model, str) else None


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
    signature: str | None,
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
    reason = check_credentials(creds, body, signature, authorization)
    if reason is None:
        return
    if signature or authorization:
        # A wrong credential is a misconfigured sender or someone probing: worth an alert.
        # Bare unauthenticated requests are only logged, so scanners can't flood the alerts.
        await raise_alert(
            engine,
            f"rejected inbound webhook for source {source!r}: {reason}",
            {
                "source": source,
                "reason": reason,
                "client": client_host,
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "body_bytes": len(body),
            },
            secrets=inbound.secrets(),
        )
    else:
        log.warning("inbound webhook for %s rejected: %s (client %s)", source, reason, client_host)
    raise Unauthorized(reason)


def _mapped_inputs(
    triggers: list[Trigger], payload: dict[str, Any], catalog: Catalog
) -> tuple[list[JobCreate], list[dict[str, Any]]]:
    """Resolve every matched trigger's input and validate it up front, so an event either starts
    all of its jobs or none (a partial start answered 422 would never be completed)."""
    bodies: list[JobCreate] = []
    problems: list[dict[str, Any]] = []
    for trigger in triggers:
        resolver = Resolver(payload)
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
    event_header: str | None,
    inbound: InboundConfig,
    settings: Settings,
    engine: Engine,
    catalog: Catalog,
    temporal: TemporalLink,
) -> WebhookAccepted:
    """For an authenticated body: start every matching trigger's workflow (idempotently)."""
    payload, event, model = parse_body(body, event_header)
    matched = inbound.triggers.matching(source, event, model)
    if not matched:
        log.info("inbound %s event %s (%s): no trigger matches; acknowledged", source, event, model)
        return WebhookAccepted(started=[])
    jobs, problems = _mapped_inputs(matched, payload, catalog)
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
        result = await job_service.submit_job(
            job,
            settings=settings,
            engine=engine,
            catalog=catalog,
            temporal=temporal,
            principal=principal_for(source),
            idempotency_key=idempotency_key(source, trigger, body),
        )
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
