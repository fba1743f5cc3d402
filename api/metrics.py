"""Prometheus metrics of the gateway, in the text exposition format 0.0.4, without a client library.

In-process: request counts and latencies (recorded by `MetricsMiddleware`, labelled with the
matched route template so ids in paths don't create series) and jobs submitted. Read from the
mirror database at scrape time: jobs per status and workflow, alerts per level.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fastapi import FastAPI
from sqlalchemy.engine import Engine
from starlette.middleware import Middleware
from starlette.routing import replace_params
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import db
from core.contracts import JobStatus

log = logging.getLogger("llmflow.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
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
# Any other method (clients may send arbitrary tokens) is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ROUTE_KEY = "llmflow.metrics.route"


# --- exposition ---------------------------------------------------------------------------------


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


Sample = tuple[str, Mapping[str, str], float]  # (name suffix, labels, value)


class Exposition:
    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        help_text = help_text.replace("\\", "\\\\").replace("\n", "\\n")
        self._lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for suffix, labels, value in samples:
            rendered = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
            label_part = "{" + rendered + "}" if rendered else ""
            self._lines.append(f"{name}{suffix}{label_part} {format_value(value)}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


# --- in-process registry ------------------------------------------------------------------------


@dataclass
class _Histogram:
    buckets: list[int]  # per bucket, not cumulative; the +Inf bucket is `count`
    total: float = 0.0
    count: int = 0


@dataclass
class MirrorCounts:
    jobs: list[tuple[str, str, int]]  # (status, workflow_name, n)
    alerts: dict[str, int]


class MetricsRegistry:
    """Lives on `app.state.metrics`; one per app."""

    def __init__(
        self,
        *,
        version: str = "unknown",
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
        db_timeout: float = 3.0,
        mirror_ttl: float = 15.0,
    ) -> None:
        self.version = version
        self.buckets = tuple(sorted(buckets))
        self.db_timeout = db_timeout
        # /metrics is unauthenticated: however often it is scraped, the database is counted at
        # most once per mirror_ttl seconds.
        self.mirror_ttl = mirror_ttl
        self._mirror_cached: tuple[float, MirrorCounts] | None = None
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._durations: dict[tuple[str, str], _Histogram] = {}
        self._submitted: dict[str, int] = {}
        self._mirror_read: asyncio.Future[MirrorCounts] | None = None

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        with self._lock:
            key = (method, route, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            hist = self._durations.get((method, route))
            if hist is None:
                hist = self._durations[(method, route)] = _Histogram([0] * len(self.buckets))
            index = bisect.bisect_left(self.buckets, seconds)  # first bound >= seconds
            if index < len(self.buckets):
                hist.buckets[index] += 1
            hist.total += seconds
            hist.count += 1

    def job_submitted(self, workflow_name: str) -> None:
        with self._lock:
            self._submitted[workflow_name] = self._submitted.get(workflow_name, 0) + 1

    async def read_mirror(self, engine: Engine) -> MirrorCounts | None:
        """Counts from the mirror within `db_timeout`, or None when the database fails or is slow.

        A read still running from an earlier scrape is awaited again rather than started anew,
        so a hanging database doesn't pile up threads, one per scrape. A read younger than
        `mirror_ttl` is served again.
        """
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

    def render(self, mirror: MirrorCounts | None, *, stuck_runs: int = 0) -> str:
        with self._lock:
            requests = dict(self._requests)
            durations = {
                k: _Histogram(list(h.buckets), h.total, h.count) for k, h in self._durations.items()
            }
            submitted = dict(self._submitted)
        out = Exposition()
        out.family(
            "llmflow_http_requests_total",
            "counter",
            "HTTP requests answered, by method, route template and status code.",
            (
                ("", {"method": m, "route": r, "status": s}, n)
                for (m, r, s), n in sorted(requests.items())
            ),
        )
        out.family(
            "llmflow_http_request_duration_seconds",
            "histogram",
            "Time from receiving a request until its response was sent, by method and route.",
            self._histogram_samples(durations),
        )
        out.family(
            "llmflow_jobs_submitted_total",
            "counter",
            "Jobs started through this gateway process (idempotent replays not counted).",
            (("", {"workflow_name": w}, n) for w, n in sorted(submitted.items())),
        )
        if mirror is not None:
            out.family(
                "llmflow_jobs",
                "gauge",
                "Jobs in the mirror database by status and workflow.",
                _job_samples(mirror.jobs),
            )
            levels = ("INFO", "WARNING", "ERROR", "CRITICAL")
            alerts = {**dict.fromkeys(levels, 0), **mirror.alerts}
            out.family(
                "llmflow_alerts",
                "gauge",
                "Alerts stored in the mirror database by level.",
                (("", {"level": lv}, n) for lv, n in alerts.items()),
            )
        out.family(
            "llmflow_runs_stuck",
            "gauge",
            "Running jobs whose workflow task keeps failing (no progress until fixed and reset).",
            [("", {}, stuck_runs)],
        )
        out.family(
            "llmflow_mirror_up",
            "gauge",
            "1 when the mirror database answered this scrape within the timeout, else 0.",
            [("", {}, 1 if mirror is not None else 0)],
        )
        out.family(
            "llmflow_build_info",
            "gauge",
            "Always 1; the version label says what is running.",
            [("", {"version": self.version}, 1)],
        )
        return out.text()

    def _histogram_samples(self, durations: dict[tuple[str, str], _Histogram]) -> list[Sample]:
        samples: list[Sample] = []
        for (method, route), hist in sorted(durations.items()):
            labels = {"method": method, "route": route}
            cumulative = 0
            for bound, n in zip(self.buckets, hist.buckets, strict=True):
                cumulative += n
                samples.append(("_bucket", {**labels, "le": format_value(bound)}, cumulative))
            samples.append(("_bucket", {**labels, "le": "+Inf"}, hist.count))
            samples.append(("_sum", labels, hist.total))
            samples.append(("_count", labels, hist.count))
        return samples


def record_job_submitted(registry: MetricsRegistry | None, workflow_name: str) -> None:
    """Count a job the gateway started. Call it after the catalog accepted `workflow_name` (the
    label stays bounded by the shipped workflows), and not for idempotent replays."""
    if registry is not None:
        registry.job_submitted(workflow_name)


def _count_mirror(engine: Engine) -> MirrorCounts:
    return MirrorCounts(jobs=db.job_status_counts(engine), alerts=db.alert_level_counts(engine))


def _consume_exception(future: asyncio.Future[MirrorCounts]) -> None:
    # A read nobody awaits any more (its scrape timed out) must not log "never retrieved".
    if not future.cancelled():
        future.exception()


def _job_samples(rows: list[tuple[str, str, int]]) -> list[Sample]:
    # Every known status for each workflow seen, so a status that empties reads 0 rather than
    # vanishing (a vanished series keeps its last value in dashboards for minutes).
    counts: dict[tuple[str, str], int] = {}
    for status, name, n in rows:
        counts[(name, status)] = counts.get((name, status), 0) + n
    names = sorted({name for name, _ in counts})
    samples: list[Sample] = []
    for name in names:
        statuses = list(JOB_STATUSES) + sorted(
            {s for n, s in counts if n == name} - set(JOB_STATUSES)
        )
        for status in statuses:
            labels = {"status": status, "workflow_name": name}
            samples.append(("", labels, counts.get((name, status), 0)))
    return samples


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
    registry = registry or MetricsRegistry(version=app.version)
    app.state.metrics = registry
    app.add_middleware(MetricsMiddleware, registry=registry)
    app.user_middleware.append(Middleware(RouteProbe))
    return registry
