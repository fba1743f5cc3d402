"""Prometheus metrics of the gateway, exposed with prometheus_client in text format 0.0.4.

Counted as they happen, on a `CollectorRegistry` of each app (a test process builds many apps;
each counts its own):

- `llmflow_http_requests_total{method, route, status}` and the histogram
  `llmflow_http_request_duration_seconds{method, route}`, recorded by `MetricsMiddleware` and
  labelled with the matched route template, so ids in paths don't create series;
- `llmflow_jobs_submitted_total{workflow_name, kind}`: jobs started, `kind` submit, rerun or fork;
- `llmflow_approvals_total{outcome}`: approval steps decided (approved, rejected) and events
  delivered to `wait_for_event` steps (event).

Computed for each scrape by `ScrapeCollector`: from the mirror database, counted in a thread at
most every `mirror_ttl` seconds, `llmflow_jobs{status, workflow_name}`,
`llmflow_jobs_waiting{workflow_name}` and `llmflow_alerts{level}`; and `llmflow_runs_stuck`,
`llmflow_mirror_up`, `llmflow_build_info{version}`.

Several gateway processes (`uvicorn --workers N`): set `PROMETHEUS_MULTIPROC_DIR` to an empty
directory, the same for all of them, before they start. The counters and histograms then go to
files there (prometheus_client's multiprocess mode) and a scrape, answered by any one process,
sums every process's, including those of processes that have exited. The gauges above are not
kept in files: the process that answers computes them for its scrape.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from starlette.middleware import Middleware
from starlette.routing import replace_params
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import db
from core.contracts import JobStatus
from core.models import Job

log = logging.getLogger("llmflow.metrics")

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "unmatched"
JOB_STATUSES: tuple[JobStatus, ...] = (
    "queued",
    "running",
    "completed",
    "failed",
    "cancelled",
    "timed_out",
)
ALERT_LEVELS = ("INFO", "WARNING", "ERROR", "CRITICAL")
SUBMIT_KINDS = ("submit", "rerun")
APPROVAL_OUTCOMES = ("approved", "rejected", "event")
# Any other method (clients may send arbitrary tokens) is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ROUTE_KEY = "llmflow.metrics.route"


# --- registry -----------------------------------------------------------------------------------


@dataclass
class MirrorCounts:
    jobs: list[tuple[str, str, int]]  # (status, workflow_name, n)
    alerts: dict[str, int]
    waiting: dict[str, int] = field(default_factory=dict)  # workflow_name -> jobs waiting


class MetricsRegistry:
    """Lives on `app.state.metrics`; one per app. `registry` is what a scrape exposes.

    In multiprocess mode make one per process: two in a process would keep the same series in
    the same file, each overwriting the other's count."""

    def __init__(
        self,
        *,
        version: str = "unknown",
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
        db_timeout: float = 3.0,
        mirror_ttl: float = 15.0,
        stuck_runs: Callable[[], int] = lambda: 0,
    ) -> None:
        self.version = version
        self.db_timeout = db_timeout
        # /metrics is unauthenticated: however often it is scraped, the database is counted at
        # most once per mirror_ttl seconds.
        self.mirror_ttl = mirror_ttl
        self.stuck_runs = stuck_runs
        # The last read's counts, None when it failed: what the next scrape shows.
        self.mirror: MirrorCounts | None = None
        self._mirror_cached: tuple[float, MirrorCounts] | None = None
        self._mirror_read: asyncio.Future[MirrorCounts] | None = None

        # prometheus_client reads the variable when it is imported, and from then on keeps every
        # counter and histogram value in this process's file of that directory; the collector
        # reads all the processes' files (registering the metrics too would show ours twice).
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        self.registry = CollectorRegistry()
        own = None if self.multiprocess_dir else self.registry
        self.requests = Counter(
            "llmflow_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ("method", "route", "status"),
            registry=own,
        )
        self.durations = Histogram(
            "llmflow_http_request_duration_seconds",
            "Time from receiving a request until its response was sent, by method and route.",
            ("method", "route"),
            buckets=tuple(sorted(buckets)),
            registry=own,
        )
        self.submitted = Counter(
            "llmflow_jobs_submitted",
            "Jobs started through this gateway, by workflow and kind: submit (POST /jobs, "
            "POST /workflow) or rerun (POST /jobs/{id}/rerun). Idempotent replays not counted.",
            ("workflow_name", "kind"),
            registry=own,
        )
        self.approvals = Counter(
            "llmflow_approvals",
            "Approval steps decided through this gateway (outcome approved or rejected) and "
            "events delivered to wait_for_event steps (outcome event).",
            ("outcome",),
            registry=own,
        )
        for outcome in APPROVAL_OUTCOMES:  # 0 from the start, so rate() sees the first one
            self.approvals.labels(outcome)
        if self.multiprocess_dir:
            MultiProcessCollector(self.registry, path=self.multiprocess_dir)
        self.registry.register(ScrapeCollector(self))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.durations.labels(method, route).observe(seconds)

    def job_submitted(self, workflow_name: str, kind: str = "submit") -> None:
        self.submitted.labels(workflow_name, kind).inc()

    def approval_decided(self, outcome: str) -> None:
        self.approvals.labels(outcome).inc()

    async def read_mirror(self, engine: Engine) -> MirrorCounts | None:
        """Counts from the mirror within `db_timeout`, or None when the database fails or is slow;
        kept in `self.mirror` for the next `render`.

        A read still running from an earlier scrape is awaited again rather than started anew,
        so a hanging database doesn't pile up threads, one per scrape. A read younger than
        `mirror_ttl` is served again.
        """
        self.mirror = await self._read_mirror(engine)
        return self.mirror

    async def _read_mirror(self, engine: Engine) -> MirrorCounts | None:
        now = time.monotonic()
        if self._mirror_cached is not None and now - self._mirror_cached[0] < self.mirror_ttl:
            return self._mirror_cached[1]
        if self._mirror_read is None or self._mirror_read.done():
            self._mirror_read = asyncio.ensure_future(asyncio.to_thread(_count_mirror, engine))
            self._mirror_read.add_done_callback(_consume_exception)
        try:
            counts = await asyncio.wait_for(asyncio.shield(self._mirror_read), self.db_timeout)
            self._mirror_cached = (now, counts)
            return counts
        except Exception as exc:
            log.warning("metrics: mirror database unavailable (%s)", type(exc).__name__)
            return None

    def render(self) -> bytes:
        """The text exposition of everything: counters and histograms (every process's, in
        multiprocess mode) and the gauges of the last `read_mirror`. Reads only memory (and, in
        multiprocess mode, the small files of the directory), so it runs on the event loop: a
        thread pool filled by a hung database must not hold up the scrape that reports it."""
        return generate_latest(_WithoutCreated(self.registry))


class ScrapeCollector:
    """The gauges computed when scraped: the mirror's counts (from `MetricsRegistry.mirror`; left
    out when the last read failed), runs stuck, mirror up, build info."""

    def __init__(self, metrics: MetricsRegistry) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        # The names this collector owns, so the registry refuses another metric of the same.
        return self._families(MirrorCounts(jobs=[], alerts={}), stuck=0)

    def collect(self) -> Iterable[Metric]:
        return self._families(self.metrics.mirror, stuck=self.metrics.stuck_runs())

    def _families(self, mirror: MirrorCounts | None, *, stuck: int) -> list[Metric]:
        out: list[Metric] = []
        if mirror is not None:
            jobs = GaugeMetricFamily(
                "llmflow_jobs",
                "Jobs in the mirror database by status and workflow.",
                labels=("status", "workflow_name"),
            )
            for status, name, n in _job_counts(mirror.jobs):
                jobs.add_metric((status, name), n)
            waiting = GaugeMetricFamily(
                "llmflow_jobs_waiting",
                "Jobs in the mirror database waiting now for an approval or an event, by workflow.",
                labels=("workflow_name",),
            )
            for name in sorted({name for _, name, _ in mirror.jobs} | set(mirror.waiting)):
                waiting.add_metric((name,), mirror.waiting.get(name, 0))
            alerts = GaugeMetricFamily(
                "llmflow_alerts",
                "Alerts stored in the mirror database by level.",
                labels=("level",),
            )
            for level, n in {**dict.fromkeys(ALERT_LEVELS, 0), **mirror.alerts}.items():
                alerts.add_metric((level,), n)
            out += [jobs, waiting, alerts]
        out.append(
            GaugeMetricFamily(
                "llmflow_runs_stuck",
                "Running jobs whose workflow task keeps failing (no progress until fixed and reset).",
                value=stuck,
            )
        )
        out.append(
            GaugeMetricFamily(
                "llmflow_mirror_up",
                "1 when the mirror database answered this scrape within the timeout, else 0.",
                value=1 if mirror is not None else 0,
            )
        )
        build = GaugeMetricFamily(
            "llmflow_build_info",
            "Always 1; the version label says what is running.",
            labels=("version",),
        )
        build.add_metric((self.metrics.version,), 1)
        out.append(build)
        return out


class _WithoutCreated:
    """The registry without the `_created` samples prometheus_client adds to each counter and
    histogram series: in the text format they are one more gauge series each, and nothing here
    reads them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():  # fresh Metric objects on each collect
            family.samples = [s for s in family.samples if s.name != family.name + "_created"]
            yield family


def record_job_submitted(
    registry: MetricsRegistry | None, workflow_name: str, kind: str = "submit"
) -> None:
    """Count a job the gateway started (`kind` submit, rerun or fork). Call it after the catalog
    accepted `workflow_name` (the label stays bounded by the shipped workflows), and not for
    idempotent replays."""
    if registry is not None:
        registry.job_submitted(workflow_name, kind)


def record_decision(registry: MetricsRegistry | None, outcome: str) -> None:
    """Count an approval decided (`approved`/`rejected`) or an event delivered (`event`), once
    the workflow took it."""
    if registry is not None:
        registry.approval_decided(outcome)


def stuck_runs_of(app: FastAPI) -> int:
    reconciler = getattr(app.state, "reconciler", None)
    return len(reconciler.stuck) if reconciler is not None else 0


def _count_mirror(engine: Engine) -> MirrorCounts:
    # One pass over jobs for both the status counts and the waiting ones.
    query = select(
        Job.status, Job.workflow_name, func.count(), func.count(col(Job.waiting_since))
    ).group_by(Job.status, Job.workflow_name)
    with Session(engine) as session:
        rows = session.exec(query).all()
    waiting: dict[str, int] = {}
    for _, name, _, n in rows:
        if n:
            waiting[name] = waiting.get(name, 0) + int(n)
    return MirrorCounts(
        jobs=[(status, name, int(n)) for status, name, n, _ in rows],
        alerts=db.alert_level_counts(engine),
        waiting=waiting,
    )


def _consume_exception(future: asyncio.Future[MirrorCounts]) -> None:
    # A read nobody awaits any more (its scrape timed out) must not log "never retrieved".
    if not future.cancelled():
        future.exception()


def _job_counts(rows: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    # Every known status for each workflow seen, so a status that empties reads 0 rather than
    # vanishing (a vanished series keeps its last value in dashboards for minutes).
    counts: dict[tuple[str, str], int] = {}
    for status, name, n in rows:
        counts[(name, status)] = counts.get((name, status), 0) + n
    out: list[tuple[str, str, int]] = []
    for name in sorted({name for name, _ in counts}):
        statuses = list(JOB_STATUSES) + sorted(
            {s for n, s in counts if n == name} - set(JOB_STATUSES)
        )
        out += [(status, name, counts.get((name, status), 0)) for status in statuses]
    return out


# --- middleware ---------------------------------------------------------------------------------


@dataclass
class _RouteSlot:
    route: str | None = None


def route_template(scope: Scope) -> str:
    """The matched route's path template, e.g. /api/v1/jobs/{job_id}; `unmatched` if none."""
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if not isinstance(template, str):
        return UNMATCHED
    params = dict(scope.get("path_params") or {})
    convertors = getattr(route, "param_convertors", {}) or {}
    if set(params) - set(convertors):
        return template  # a prefix with its own parameters: don't copy ids into the label
    # A route of an included router may know only its own path, not the include prefix:
    # render it with this request's params and keep the part of the path before it.
    try:
        rendered, _ = replace_params(template, convertors, params)
    except Exception:
        return template
    path: str = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if rendered and path.endswith(rendered):
        return path[: len(path) - len(rendered)] + template
    return template


class MetricsMiddleware:
    """Counts and times every HTTP response, labelled by route template.

    Add it outermost (last `add_middleware`), so 413s and errors of other middleware count too;
    `install_metrics` does that and adds `RouteProbe` innermost to see the route the router
    matched even when a middleware in between copies the scope.
    """

    def __init__(self, app: ASGIApp, registry: MetricsRegistry) -> None:
        self.app = app
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        slot = _RouteSlot()
        scope = {**scope, _ROUTE_KEY: slot}
        status = 500  # if the app raises before answering, the server answers 500
        start = time.perf_counter()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = slot.route or route_template(scope)
            self.registry.observe_request(
                scope["method"], route, status, time.perf_counter() - start
            )


def mark_route(scope: Scope, route: str) -> None:
    """Label this request with `route` (for a layer that answers before the router runs)."""
    slot = scope.get(_ROUTE_KEY)
    if isinstance(slot, _RouteSlot):
        slot.route = route


class RouteProbe:
    """Innermost layer: hands the router's match to the MetricsMiddleware outside it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            slot = scope.get(_ROUTE_KEY) if scope["type"] == "http" else None
            if isinstance(slot, _RouteSlot):
                slot.route = route_template(scope)


def install_metrics(app: FastAPI, registry: MetricsRegistry | None = None) -> MetricsRegistry:
    """Create the registry on `app.state.metrics` and add the middleware. Call it after every
    other `add_middleware`, so the metrics layer is the outermost one."""
    registry = registry or MetricsRegistry(
        version=app.version, stuck_runs=lambda: stuck_runs_of(app)
    )
    app.state.metrics = registry
    app.add_middleware(MetricsMiddleware, registry=registry)
    app.user_middleware.append(Middleware(RouteProbe))
    return registry
