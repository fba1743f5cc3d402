"""Build the worker: clients, activities and the sandboxed interpreter, wired once at start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import redis.asyncio as aioredis
from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.alerts import AlertActivities
from activities.cache import ResponseCache
from activities.external_api import ExternalApiActivities
from activities.http_errors import new_http_client
from activities.http_step import HttpActivities
from activities.job_secrets import JobSecretActivities
from activities.llm.activity import LlmActivities
from activities.mirror import MirrorActivities
from activities.resilience import Resilience
from activities.webhook_step import WebhookActivities
from core import tracing
from core.db import create_tables, insert_alert, make_engine
from core.llm_stream import DeltaSink
from core.models import Alert
from core.settings import Settings
from core.ssrf import guarded_client
from worker.failure_log import StepOfFailure, install_one_line_failures
from worker.foreach_batch import ForeachBatchWorkflow
from worker.interpreter import InterpreterWorkflow
from worker.metrics import WorkerMetrics, runtime_meter
from worker.mirror_workflow import MirrorWorkflow
from worker.payload_guard import PayloadGuard
from worker.webhook_delivery import WebhookDeliveryWorkflow
from workflow_defs.services import ServiceRegistry, load_services

log = logging.getLogger(__name__)

# Pure modules the interpreter uses; passing them through keeps one copy (and pydantic's
# compiled validators) instead of re-importing them in every workflow sandbox.
PASSTHROUGH_MODULES = (
    "core",
    "workflow_defs",
    "activities",
    # The interpreter's own step handlers and helpers: workflow code without module state,
    # and about 30 ms of re-imports per new workflow instance otherwise.
    "worker.steps",
    "worker.job_effects",
    "worker.limits",
    "worker.step_inputs",
    "pydantic",
    "pydantic_core",
    "jsonschema",
    "jsonschema_specifications",
    "referencing",
    "rpds",
    "attrs",
    "httpx",
    "sqlalchemy",
    "sqlmodel",
    "redis",
    # Temporal's TracingInterceptor runs in the sandbox when tracing is on.
    "opentelemetry",
)


def sandbox_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )


@dataclass
class WorkerResources:
    engine: Engine
    registry: ServiceRegistry
    http: httpx.AsyncClient
    guarded: httpx.AsyncClient
    redis: aioredis.Redis | None


def breaker_alerts(engine: Engine) -> Callable[[str, str, str, str], Awaitable[None]]:
    """on_transition for the breakers: an Alert row per open (WARNING) and close (INFO)."""

    async def on_transition(key: str, old: str, new: str, reason: str) -> None:
        level = {"open": "WARNING", "closed": "INFO"}.get(new)
        if level is None:  # half-open is a step towards one of those, not news
            return
        alert = Alert(
            level=level,
            source="breaker",
            message=f"circuit breaker {key}: {old} → {new} ({reason})"[:2000],
            details={"key": key, "from": old, "to": new},
        )
        try:
            await asyncio.to_thread(insert_alert, engine, alert)
        except Exception:
            log.exception("could not store the alert for breaker %s", key)

    return on_transition


@contextlib.asynccontextmanager
async def worker_resources(
    settings: Settings, *, engine: Engine | None = None
) -> AsyncIterator[WorkerResources]:
    own_engine = engine is None
    engine = engine or make_engine(settings.database_url)
    create_tables(engine, auto_migrate=settings.database_auto_migrate)
    registry = load_services(settings.workflow_defs_dir / "services.json")
    redis_client = aioredis.from_url(settings.redis_url) if settings.redis_url else None
    tracing.setup(settings, "llmflow-worker")
    http = new_http_client()
    tracing.instrument_httpx(http)  # provider and service calls; no-op unless tracing is on
    guarded = guarded_client(allow_private=settings.webhook_allow_private)
    try:
        yield WorkerResources(engine, registry, http, guarded, redis_client)
    finally:
        await http.aclose()
        await guarded.aclose()
        if redis_client is not None:
            await redis_client.aclose()
        if own_engine:
            engine.dispose()


def build_worker(
    client: Client, settings: Settings, res: WorkerResources, **worker_kwargs: object
) -> Worker:
    # Metrics go to the client's runtime: exported when WORKER_METRICS_PORT is set, else no-op.
    metrics = WorkerMetrics(runtime_meter(client))
    # One per worker: the in-process fallback state must be shared by all its activities.
    resilience = Resilience(
        res.redis, on_transition=metrics.on_breaker_transition(breaker_alerts(res.engine))
    )
    metrics.watch_breakers(resilience.snapshot)
    deltas = DeltaSink(res.redis) if res.redis is not None else None
    llm = LlmActivities(settings, res.http, resilience=resilience, deltas=deltas)
    external = ExternalApiActivities(
        settings, res.http, res.registry, ResponseCache(res.redis), resilience
    )
    http_step = HttpActivities(settings, res.guarded)
    webhook = WebhookActivities(settings, res.guarded, res.engine)
    alerts = AlertActivities(settings, res.engine, res.guarded)
    mirror = MirrorActivities(res.engine)
    job_secrets = JobSecretActivities(res.engine)
    install_one_line_failures()
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[
            InterpreterWorkflow,
            ForeachBatchWorkflow,
            WebhookDeliveryWorkflow,
            MirrorWorkflow,
        ],
        activities=[
            llm.llm_call,
            external.external_api_call,
            http_step.http_request,
            webhook.webhook_send,
            webhook.deliver_job_webhook,
            job_secrets.forget_job_secret,
            alerts.raise_alert,
            mirror.mirror_job,
        ],
        workflow_runner=sandbox_runner(),
        # PayloadGuard outside: an llm answer it refuses was still paid for, and is counted.
        interceptors=[
            *tracing.worker_interceptors(client),
            PayloadGuard(),
            metrics,
            StepOfFailure(),
        ],
        **worker_kwargs,  # type: ignore[arg-type]
    )
