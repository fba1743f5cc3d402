"""llmflow's own worker metrics, exported with the Temporal SDK's when WORKER_METRICS_PORT is set.

One activity interceptor reads what the activities already return, so they stay free of
metric code:

- `llm_call` results: `llmflow_llm_tokens{provider, model, kind}` (input|output), the
  histogram `llmflow_llm_cost_usd{provider, model}` (its `_sum` is dollars spent, `_count`
  the calls that answered) and `llmflow_cost_usd_total{workflow, provider, model}`, the dollars
  this worker's llm calls cost since it started. The SDK meter has no float counter, so it is
  a float gauge only ever set higher (a restart starts it at 0 again, as a counter's reset):
  `rate()`/`increase()` read it as a counter;
- the terminal `mirror_job` write of each job (in the run, or by the detached MirrorWorkflow):
  the histogram `llmflow_job_duration{workflow_name, status}` in milliseconds and
  `llmflow_step_failures{workflow_name, step_type, error_type}` for every failed step record
  (tolerated ones included);
- `webhook_send` (webhook steps) and `deliver_job_webhook` (completion webhooks):
  `llmflow_webhook_deliveries{kind, outcome}` per attempt, outcome delivered|retrying|failed.

And the circuit breakers: `llmflow_breaker_state{key}` (0 closed, 1 half-open, 2 open) set on
every transition this worker sees and refreshed from the shared state (Redis) at most every
`refresh_seconds` while activities run, plus `llmflow_breaker_transitions{key, to}`.

Counters carry no `_total` suffix and durations are milliseconds: the SDK exporter's defaults
(bucket bounds of the two histograms: core.temporal.HISTOGRAM_BUCKETS).
Metric code never fails an activity: a broken metric is logged and the result goes through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import Runtime
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from core.contracts import (
    DELIVER_JOB_WEBHOOK,
    LLM_CALL,
    MIRROR_JOB,
    TERMINAL_STATUSES,
    WEBHOOK_SEND,
)

log = logging.getLogger(__name__)

OnTransition = Callable[[str, str, str, str], Awaitable[None]]
Snapshot = Callable[[], Awaitable[dict[str, dict[str, Any]]]]

BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}
WEBHOOK_KINDS = {WEBHOOK_SEND: "step", DELIVER_JOB_WEBHOOK: "completion"}


def runtime_meter(client: Client) -> MetricMeter:
    """The meter of the runtime the client (and so the worker) runs on; a no-op meter when
    that runtime exports no metrics."""
    runtime = client.service_client.config.runtime or Runtime.default()
    return runtime.metric_meter


class WorkerMetrics(Interceptor):
    def __init__(self, meter: MetricMeter, *, refresh_seconds: float = 15.0) -> None:
        self._meter = meter
        self._refresh_seconds = refresh_seconds
        self._snapshot: Snapshot | None = None
        self._refreshed = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self._breaker_state = meter.create_gauge(
            "llmflow_breaker_state", "Circuit breaker state by key: 0 closed, 1 half-open, 2 open"
        )
        self._breaker_transitions = meter.create_counter(
            "llmflow_breaker_transitions", "Circuit breaker transitions by key and new state"
        )
        self._cost_totals: dict[tuple[str, str, str], float] = {}

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _MeteredActivity(next, self)

    # --- breakers -----------------------------------------------------------------------------

    def on_breaker_transition(self, inner: OnTransition | None = None) -> OnTransition:
        """A breaker's on_transition that sets the gauge, then calls `inner` (the alerts)."""

        async def on_transition(key: str, old: str, new: str, reason: str) -> None:
            self._set_breaker(key, new)
            self._guarded(
                lambda: self._breaker_transitions.add(1, {"key": key, "to": new}), "transitions"
            )
            if inner is not None:
                await inner(key, old, new, reason)

        return on_transition

    def watch_breakers(self, snapshot: Snapshot) -> None:
        """Refresh every breaker's gauge from `snapshot` (Resilience.snapshot) now and then:
        with Redis, other workers' transitions show here too."""
        self._snapshot = snapshot

    def _set_breaker(self, key: str, state: str) -> None:
        value = BREAKER_STATE_VALUES.get(state)
        if value is not None:
            self._guarded(lambda: self._breaker_state.set(value, {"key": key}), "breaker state")

    def maybe_refresh_breakers(self) -> None:
        if self._snapshot is None or time.monotonic() - self._refreshed < self._refresh_seconds:
            return
        if self._refreshing is not None and not self._refreshing.done():
            return
        self._refreshed = time.monotonic()
        self._refreshing = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        assert self._snapshot is not None
        try:
            states = await self._snapshot()
        except Exception as exc:
            log.warning("breaker metrics: snapshot failed (%s)", type(exc).__name__)
            return
        for key, state in states.items():
            self._set_breaker(key, str(state.get("state", "")))

    # --- activity results ---------------------------------------------------------------------

    def observe(self, activity_type: str, input: ExecuteActivityInput, result: Any) -> None:
        if activity_type == LLM_CALL:
            self._guarded(lambda: self._llm(result, input.args[0] if input.args else None), "llm")
        elif activity_type == MIRROR_JOB and input.args:
            self._guarded(lambda: self._job(input.args[0]), "job")
        elif activity_type in WEBHOOK_KINDS:
            self._webhook(activity_type, "delivered")

    def observe_failure(self, activity_type: str, exc: BaseException) -> None:
        if activity_type in WEBHOOK_KINDS and not isinstance(exc, asyncio.CancelledError):
            final = isinstance(exc, ApplicationError) and exc.non_retryable
            self._webhook(activity_type, "failed" if final else "retrying")

    def _webhook(self, activity_type: str, outcome: str) -> None:
        labels = {"kind": WEBHOOK_KINDS[activity_type], "outcome": outcome}
        self._guarded(
            lambda: (
                _activity_meter()
                .create_counter(
                    "llmflow_webhook_deliveries", "Webhook delivery attempts by outcome"
                )
                .add(1, labels)
            ),
            "webhook",
        )

    def _llm(self, result: Any, call: Any) -> None:
        provider, model = _get(result, "provider"), _get(result, "model")
        usage = _get(result, "usage")
        if not provider or usage is None:
            return
        labels = {"provider": str(provider), "model": str(model or "")}
        meter = _activity_meter()
        tokens = meter.create_counter("llmflow_llm_tokens", "LLM tokens by provider, model, kind")
        for kind in ("input", "output"):
            count = int(_get(usage, f"{kind}_tokens") or 0)
            if count > 0:
                tokens.add(count, {**labels, "kind": kind})
        cost = float(_get(result, "cost_usd") or 0.0)
        meter.create_histogram_float(
            "llmflow_llm_cost_usd", "Cost of each answered llm step attempt, in US dollars"
        ).record(cost, labels)
        workflow = str(_get(call, "workflow") or "")
        key = (workflow, labels["provider"], labels["model"])
        self._cost_totals[key] = total = round(self._cost_totals.get(key, 0.0) + cost, 8)
        meter.create_gauge_float(
            "llmflow_cost_usd_total",
            "US dollars spent on llm calls since the worker started (only rises)",
        ).set(total, {"workflow": workflow, **labels})

    def _job(self, update: Any) -> None:
        status = _get(update, "status")
        if status not in TERMINAL_STATUSES:
            return
        workflow_name = str(_get(update, "workflow_name") or "")
        metadata = _get(update, "metadata") or {}
        meter = _activity_meter()
        duration_ms = metadata.get("duration_ms") if isinstance(metadata, Mapping) else None
        if isinstance(duration_ms, int | float):
            meter.create_histogram(
                "llmflow_job_duration", "Job duration by workflow and final status", "ms"
            ).record(max(int(duration_ms), 0), {"workflow_name": workflow_name, "status": status})
        steps = metadata.get("steps") if isinstance(metadata, Mapping) else None
        failures = meter.create_counter(
            "llmflow_step_failures", "Failed steps of finished jobs by step type and error type"
        )
        for record in steps or []:
            if not isinstance(record, Mapping) or record.get("status") != "failed":
                continue
            error = record.get("error")
            error_type = error.get("type") if isinstance(error, Mapping) else None
            failures.add(
                1,
                {
                    "workflow_name": workflow_name,
                    "step_type": str(record.get("type") or "unknown"),
                    "error_type": str(error_type or "UNKNOWN"),
                },
            )

    @staticmethod
    def _guarded(record: Callable[[], object], what: str) -> None:
        try:
            record()
        except Exception:
            log.exception("worker metrics: recording %s failed", what)


class _MeteredActivity(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, metrics: WorkerMetrics) -> None:
        super().__init__(next)
        self._metrics = metrics

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        activity_type = activity.info().activity_type
        try:
            result = await super().execute_activity(input)
        except BaseException as exc:
            self._metrics.observe_failure(activity_type, exc)
            raise
        finally:
            # After the call: it may have created or moved a breaker.
            self._metrics.maybe_refresh_breakers()
        self._metrics.observe(activity_type, input, result)
        return result


def _activity_meter() -> MetricMeter:
    # Adds namespace, task_queue, activity_type and workflow_type, like the SDK's own metrics.
    return activity.metric_meter()


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)
