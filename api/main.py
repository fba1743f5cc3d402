"""The gateway's app factory and lifespan: clients are built here once and shared."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import Client

from api.auth import check_auth_config
from api.docs_assets import install_docs
from api.errors import CatchAll, install_error_handlers
from api.fast_reads import JobReadFastPath
from api.inbound_service import load_inbound
from api.metrics import install_metrics
from api.middleware import BodySizeLimit, JsonByDefault
from api.reconciler import Reconciler
from api.routers import (
    alerts,
    cache,
    codec,
    health,
    inbound,
    job_forks,
    jobs,
    legacy,
    metrics,
    workflows,
)
from api.temporal_link import TemporalLink
from core import tracing
from core.db import create_tables, make_engine
from core.logging import setup_logging
from core.payload_codec import check_payload_key_config
from core.secret_box import check_secret_key_config
from core.settings import Settings, get_settings
from workflow_defs.catalog import load_catalog

log = logging.getLogger("llmflow.api")
API_PREFIX = "/api/v1"


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    temporal_client: Client | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    check_auth_config(settings)
    check_secret_key_config(settings)
    check_payload_key_config(settings)
    # Fail fast, before serving anything, on an invalid shipped definition.
    catalog = load_catalog(settings)
    inbound_config = load_inbound(settings, catalog.definitions)  # refuses a bad triggers.json
    tracing.setup(settings, "llmflow-gateway")  # before the Temporal client connects

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_engine = engine is None
        app.state.engine = engine or make_engine(settings.database_url)
        try:
            create_tables(app.state.engine)
        except SQLAlchemyError as exc:
            # Serve anyway: jobs are accepted into Temporal and the worker's mirror writes the
            # rows later; the reconciler keeps trying to create the tables.
            log.warning(
                "database unavailable at start (%s); continuing without it", type(exc).__name__
            )
        app.state.temporal = TemporalLink(settings, temporal_client)
        app.state.redis = aioredis.from_url(settings.redis_url) if settings.redis_url else None
        reconciler = app.state.reconciler = Reconciler(app.state.engine, app.state.temporal)
        tasks = [
            asyncio.create_task(reconciler.run_forever(), name="mirror-reconciler"),
            asyncio.create_task(
                app.state.temporal.rows.run_forever(app.state.engine), name="polled-rows"
            ),
        ]
        # Everything built so far lives as long as the process: keep it out of the cyclic
        # collector, whose full passes over ~160k start-up objects took 40-80 ms each and landed
        # on whichever requests were in flight (the submit p99 in bench/README.md).
        gc.freeze()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(Exception):  # the database may be what is going away
                await app.state.inbound.rejections.flush(app.state.engine)
            if app.state.redis is not None:
                await app.state.redis.aclose()
            if own_engine:
                app.state.engine.dispose()

    app = FastAPI(
        title="llmflow",
        version="0.1.0",
        description="Durable multi-step LLM workflows on Temporal. Submit jobs, poll or get a signed webhook.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from install_docs, with their assets served here
        redoc_url=None,
    )
    app.add_middleware(CatchAll)  # first added = innermost: sees what no handler took
    app.add_middleware(JsonByDefault)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    # Job polls skip FastAPI's routing; anything but a 200 still goes to the route.
    app.add_middleware(JobReadFastPath, prefix=API_PREFIX)
    install_metrics(app)  # after every add_middleware: outermost layer; sets app.state.metrics
    install_error_handlers(app)
    app.state.settings = settings
    app.state.catalog = catalog
    app.state.inbound = inbound_config
    app.include_router(health.router)
    app.include_router(metrics.router)  # GET /metrics, no prefix, no auth (scrape privately)
    app.include_router(codec.router)  # /codec/decode|encode for the Web UI: CORS, API key
    app.include_router(alerts.router, prefix=API_PREFIX)
    app.include_router(cache.router, prefix=API_PREFIX)
    app.include_router(jobs.router, prefix=API_PREFIX)
    app.include_router(job_forks.router, prefix=API_PREFIX)
    app.include_router(legacy.router, prefix=API_PREFIX)
    app.include_router(workflows.router, prefix=API_PREFIX)
    app.include_router(health.detailed_router, prefix=API_PREFIX)
    app.include_router(inbound.router, prefix=API_PREFIX)  # own signature/token auth, no API key
    install_docs(app)  # Swagger UI and ReDoc without a CDN
    tracing.instrument_app(app)  # no-op unless tracing is on

    return app


def app_from_env() -> FastAPI:
    settings = get_settings()
    setup_logging(settings.log_level)
    return create_app(settings)
