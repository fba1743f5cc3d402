"""`llmflow worker`: validate shipped definitions, connect, register search attributes, run."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from datetime import timedelta

from core import schema_migrations
from core.logging import setup_logging
from core.settings import Settings, get_settings
from core.temporal import connect, ensure_search_attributes, metrics_runtime
from worker.app import build_worker, worker_resources
from workflow_defs.catalog import load_catalog

log = logging.getLogger("llmflow.worker")


async def run_worker(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    setup_logging(settings.log_level)
    catalog = load_catalog(settings)  # refuses to start on an invalid shipped definition
    if not settings.database_auto_migrate:
        # Before waiting for Temporal: a schema behind head is refused at once.
        schema_migrations.check_at_start(settings.database_url)
    log.info(
        "definitions: %s", ", ".join(f"{d.name}@{d.version}" for d in catalog.definitions.all())
    )
    runtime = (
        metrics_runtime(settings.worker_metrics_port, settings.worker_metrics_host)
        if settings.worker_metrics_port
        else None
    )
    client = await connect(settings, attempts=30, runtime=runtime)
    if runtime is not None:
        log.info(
            "worker metrics on %s:%d/metrics",
            settings.worker_metrics_host,
            settings.worker_metrics_port,
        )
    if settings.temporal_search_attributes:
        await ensure_search_attributes(client, settings.temporal_namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker_resources(settings) as res:
        # On SIGTERM (deploys), give running activities time to finish before they are
        # cancelled; anything still running is retried by Temporal on another worker.
        worker = build_worker(
            client, settings, res, graceful_shutdown_timeout=timedelta(seconds=20)
        )
        log.info(
            "worker polling task queue %r on %s (namespace %s)",
            settings.temporal_task_queue,
            settings.temporal_address,
            settings.temporal_namespace,
        )
        # Start-up objects (modules, catalog, clients) live as long as the process: out of the
        # cyclic collector's full passes, which otherwise stall every running workflow task.
        gc.freeze()
        async with worker:
            await stop.wait()
    log.info("worker stopped")
