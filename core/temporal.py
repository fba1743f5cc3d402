"""Temporal client factory, search-attribute registration and the one way a job is started."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    Priority,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from core import tracing
from core.contracts import INTERPRETER_WORKFLOW, InterpreterInput, JobResult
from core.payload_codec import data_converter
from core.search_attributes import (
    job_search_attributes,
)
from core.settings import Settings

log = logging.getLogger(__name__)

SEARCH_ATTRIBUTES = {
    "WorkflowName": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "WorkflowVersion": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "JobStatus": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
}


# Bounds of llmflow's own histograms (worker/metrics.py): the SDK's default buckets stop at
# 10 000 (ms), far below a job that waits for an approval, and far above a call's cost in USD.
HISTOGRAM_BUCKETS: dict[str, list[float]] = {
    # milliseconds: 0.1 s … 1 day
    "llmflow_job_duration": [
        seconds * 1000
        for seconds in (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 86400)
    ],
    "llmflow_llm_cost_usd": [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0],
}


def metrics_runtime(port: int, host: str = "127.0.0.1") -> Runtime:
    """A Temporal runtime exporting SDK and activity metrics at http://host:port/metrics."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"{host}:{port}", histogram_bucket_overrides=HISTOGRAM_BUCKETS
            )
        )
    )


async def connect(
    settings: Settings, *, attempts: int = 1, delay: float = 1.0, runtime: Runtime | None = None
) -> Client:
    last: Exception | None = None
    # pydantic_data_converter, with the payload encryption codec when LLMFLOW_PAYLOAD_KEY is
    # set. Built before connecting: a malformed key is a configuration error, not retried.
    converter = data_converter(settings)
    for attempt in range(max(1, attempts)):
        try:
            return await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                data_converter=converter,
                runtime=runtime,
                # Temporal's TracingInterceptor when this process traces; else none.
                interceptors=tracing.client_interceptors(),
            )
        except Exception as exc:  # connection refused while the server is starting
            last = exc
            if attempt + 1 < attempts:
                await asyncio.sleep(delay)
    assert last is not None
    raise last


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register the search attributes the interpreter sets, when missing. Returns those added."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    known = set(existing.custom_attributes) | set(existing.system_attributes)
    missing = {k: v for k, v in SEARCH_ATTRIBUTES.items() if k not in known}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
        log.info("registered search attributes: %s", ", ".join(sorted(missing)))
    return sorted(missing)


def temporal_priority(priority: int | None) -> Priority:
    """A job's 0-10 priority (higher is more urgent, 0 the earlier service's default) as a
    Temporal priority key (1 runs first, 3 is the server's default): 0-3 → 3, 4-7 → 2,
    8-10 → 1. Activities inherit it from the run."""
    if priority is None or priority <= 3:
        return Priority.default
    return Priority(priority_key=2 if priority <= 7 else 1)


async def start_job(
    client: Client,
    settings: Settings,
    inp: InterpreterInput,
    *,
    reuse_existing: bool = False,
    memo: dict[str, Any] | None = None,
) -> WorkflowHandle[Any, JobResult]:
    """Start the interpreter with workflow id = job id.

    With `reuse_existing` (idempotent submits), a run already started under this id is
    returned instead of a second one: USE_EXISTING while it runs, REJECT_DUPLICATE after.
    """
    defn = inp.definition
    if not settings.temporal_search_attributes:
        options = inp.options.model_copy(update={"search_attributes": False})
        inp = inp.model_copy(update={"options": options})
    return await client.start_workflow(
        INTERPRETER_WORKFLOW,
        inp,
        id=inp.job_id,
        result_type=JobResult,
        task_queue=settings.temporal_task_queue,
        search_attributes=job_search_attributes(defn.name, defn.version)
        if inp.options.search_attributes
        else None,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=(
            WorkflowIDConflictPolicy.USE_EXISTING
            if reuse_existing
            else WorkflowIDConflictPolicy.FAIL
        ),
        memo=memo,
        priority=temporal_priority(inp.labels.priority),
        static_summary=f"{defn.name} {defn.version}",
        task_timeout=timedelta(seconds=10),
    )
