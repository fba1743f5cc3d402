"""GET /metrics: a well-formed Prometheus text exposition (prometheus_client's, read here by a
strict parser of our own and by prometheus_client's), request metrics by route template, jobs
submitted and rerun, approvals and events, gauges read from the mirror at scrape time, a 200
with llmflow_mirror_up 0 when the database is down or hangs, and counts summed over processes in
multiprocess mode."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine
from temporalio.client import Client

from api.main import create_app
from api.metrics import CONTENT_TYPE, MetricsRegistry, record_decision, record_job_submitted
from core.db import delete_job, insert_alert, insert_job, make_engine
from core.models import Alert, Job
from core.settings import Settings
from tests import harness
from tests.api_server import serve
from tests.test_api_alerts import build_app
from tests.test_api_jobs import poll

REPO = Path(__file__).resolve().parents[1]

Labels = tuple[tuple[str, str], ...]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
_UNESCAPE = re.compile(r"\\([\\\"n])")


def parse(text: str) -> dict[str, dict]:
    """A strict reader of the text format: every sample belongs to a family declared before it
    with exactly one HELP and one TYPE. Returns {family: {type, help, samples: {(name, labels):
    value}}}."""
    families: dict[str, dict] = {}
    assert text.endswith("\n")
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            kind, name, rest = line[2:6], *line[7:].split(" ", 1)
            fam = families.setdefault(name, {"samples": {}})
            assert kind.lower() not in fam, f"second {kind} for {name}"
            assert not fam["samples"], f"{kind} after samples of {name}"
            fam[kind.lower()] = rest
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, raw_labels, raw_value = match.groups()
        labels: list[tuple[str, str]] = []
        pos = 0
        while raw_labels and pos < len(raw_labels):
            lm = _LABEL.match(raw_labels, pos)
            assert lm, f"bad labels in {line!r}"
            value = _UNESCAPE.sub(lambda m: {"n": "\n"}.get(m[1], m[1]), lm[2])
            labels.append((lm[1], value))
            pos = lm.end()
        family = _family_of(name, families)
        assert "type" in families[family] and "help" in families[family], name
        key = (name, tuple(labels))
        assert key not in families[family]["samples"], f"duplicate sample {line!r}"
        families[family]["samples"][key] = float(raw_value)
    for name, fam in families.items():
        if fam["type"] == "histogram":
            check_histogram(name, fam["samples"])
    return families


def _family_of(sample: str, families: dict[str, dict]) -> str:
    if sample in families:
        return sample
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample.removesuffix(suffix)
        if base != sample and families.get(base, {}).get("type") == "histogram":
            return base
    raise AssertionError(f"sample {sample} has no HELP/TYPE")


def check_histogram(name: str, samples: dict) -> None:
    series: dict[Labels, list[tuple[float, float]]] = defaultdict(list)
    sums: dict[Labels, float] = {}
    counts: dict[Labels, float] = {}
    for (sample, labels), value in samples.items():
        rest = tuple(kv for kv in labels if kv[0] != "le")
        if sample == f"{name}_bucket":
            series[rest].append((float(dict(labels)["le"]), value))
        elif sample == f"{name}_sum":
            sums[rest] = value
        elif sample == f"{name}_count":
            counts[rest] = value
    assert set(series) == set(sums) == set(counts)
    for labels, buckets in series.items():
        bounds = [b for b, _ in buckets]
        values = [v for _, v in buckets]
        assert bounds == sorted(bounds) and math.isinf(bounds[-1]), (name, labels)
        assert values == sorted(values), f"{name}{labels} buckets not cumulative"
        assert values[-1] == counts[labels] and sums[labels] >= 0


def value(families: dict, family: str, **labels: str) -> float | None:
    """The sample of `family` (gauge/counter) whose labels are exactly `labels`."""
    want = (family, tuple(sorted(labels.items())))
    for (name, got), v in families.get(family, {"samples": {}})["samples"].items():
        if (name, tuple(sorted(got))) == want:
            return v  # type: ignore[no-any-return]
    return None


async def scrape(api) -> dict:  # type: ignore[no-untyped-def]
    resp = await api.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == CONTENT_TYPE
    return parse(resp.text)


def test_label_values_are_escaped_and_no_created_series_are_exposed() -> None:
    tricky = 'a "quoted" \\ back\nslash'
    registry = MetricsRegistry(version=tricky)
    registry.observe_request("GET", "/r", 200, 0.25)
    text = registry.render().decode()
    assert 'llmflow_build_info{version="a \\"quoted\\" \\\\ back\\nslash"} 1.0\n' in text
    families = parse(text)
    assert value(families, "llmflow_build_info", version=tricky) == 1
    # prometheus_client's per-series creation time would double the series; left out.
    assert not [name for name in families if name.endswith("_created")]
    assert value(families, "llmflow_approvals_total", outcome="approved") == 0


def test_histogram_buckets_hold_values_at_their_bound() -> None:
    registry = MetricsRegistry(buckets=(0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 7.0):
        registry.observe_request("GET", "/r", 200, seconds)
    families = parse(registry.render().decode())
    hist = families["llmflow_http_request_duration_seconds"]["samples"]
    labels = (("method", "GET"), ("route", "/r"))
    bucket = "llmflow_http_request_duration_seconds_bucket"
    assert hist[(bucket, (("le", "0.1"), *labels))] == 2  # le is inclusive
    assert hist[(bucket, (("le", "1.0"), *labels))] == 3
    assert hist[(bucket, (("le", "+Inf"), *labels))] == 4
    assert hist[("llmflow_http_request_duration_seconds_sum", labels)] == pytest.approx(7.65)
    assert value(families, "llmflow_mirror_up") == 0
    assert "llmflow_jobs" not in families and "llmflow_jobs_waiting" not in families


async def test_requests_are_counted_by_route_template(
    settings: Settings, engine: Engine, temporal_client: Client
) -> None:
    keyed = settings.model_copy(update={"api_keys": ["metrics-key-123456"]})
    auth = {"Authorization": "Bearer metrics-key-123456"}
    app = build_app(keyed, engine, temporal_client)
    async with serve(app) as api:
        before = await scrape(api)  # no key needed for /metrics
        assert (await api.get("/api/v1/jobs/abc", headers=auth)).status_code == 404
        assert (await api.get("/api/v1/jobs/def", headers=auth)).status_code == 404
        assert (await api.get("/api/v1/jobs/abc")).status_code == 401
        assert (await api.get("/no/such/path/123")).status_code == 404
        assert (await api.delete("/api/v1/jobs/abc", headers=auth)).status_code == 405
        # An untyped body: JsonByDefault copies the scope, the route must still be known.
        untyped = await api.post(
            "/api/v1/jobs", content=b'{"workflow_name": "no-such-workflow"}', headers=auth
        )
        assert untyped.status_code == 404
        # A method no route takes (httptools, the gateway's HTTP parser, answers 400 itself
        # to tokens it does not know, before any app code: use one it knows).
        assert (await api.request("PURGE", "/health")).status_code == 405
        after = await scrape(api)

    requests = "llmflow_http_requests_total"
    job = "/api/v1/jobs/{job_id}"
    assert value(before, requests, method="GET", route=job, status="404") is None
    assert value(after, requests, method="GET", route=job, status="404") == 2
    assert value(after, requests, method="GET", route=job, status="401") == 1
    assert value(after, requests, method="DELETE", route=job, status="405") == 1
    assert value(after, requests, method="POST", route="/api/v1/jobs", status="404") == 1
    assert value(after, requests, method="GET", route="unmatched", status="404") == 1
    assert value(after, requests, method="other", route="/health", status="405") == 1
    assert value(after, requests, method="GET", route="/metrics", status="200") == 1
    count = "llmflow_http_request_duration_seconds_count"
    durations = after["llmflow_http_request_duration_seconds"]["samples"]
    assert durations[(count, (("method", "GET"), ("route", job)))] == 3
    routes = {dict(labels)["route"] for _, labels in after[requests]["samples"]}
    assert not any("abc" in r or "def" in r or "123" in r for r in routes), routes
    assert value(after, "llmflow_build_info", version=app.version) == 1


async def test_gauges_read_jobs_waiting_and_alerts_from_the_mirror_at_scrape_time(
    settings: Settings, engine: Engine, temporal_client: Client
) -> None:
    workflow = f"metrics-test-{uuid.uuid4().hex[:10]}"
    job_ids: list[str] = []

    def add_job(status: str, waiting_since: datetime | None = None) -> None:
        job_ids.append(f"{workflow}-{len(job_ids)}")
        job = Job(job_id=job_ids[-1], workflow_name=workflow, workflow_version="1", status=status)
        job.waiting_since = waiting_since
        insert_job(engine, job)

    for status in ("completed", "completed", "failed", "cancelled"):
        add_job(status)
    app = build_app(settings, engine, temporal_client)
    app.state.metrics.mirror_ttl = 0  # count on every scrape, to see each change
    try:
        async with serve(app) as api:
            first = await scrape(api)
            add_job("completed")
            add_job("running", waiting_since=datetime.now(UTC))
            add_job("running")
            insert_alert(engine, Alert(level="CRITICAL", source=workflow, message="m"))
            record_job_submitted(app.state.metrics, workflow)
            record_job_submitted(app.state.metrics, workflow, kind="rerun")
            record_job_submitted(None, workflow)  # an app without metrics: no-op
            record_decision(app.state.metrics, "rejected")
            record_decision(None, "rejected")
            second = await scrape(api)
    finally:
        for job_id in job_ids:
            delete_job(engine, job_id)

    def jobs(families: dict, status: str) -> float | None:
        return value(families, "llmflow_jobs", status=status, workflow_name=workflow)

    assert value(first, "llmflow_mirror_up") == 1
    assert [jobs(first, s) for s in ("completed", "failed", "cancelled")] == [2, 1, 1]
    assert [jobs(first, s) for s in ("queued", "running", "timed_out")] == [0, 0, 0]
    assert jobs(second, "completed") == 3 and jobs(second, "running") == 2
    waiting = "llmflow_jobs_waiting"
    assert value(first, waiting, workflow_name=workflow) == 0  # a workflow seen, none waiting
    assert value(second, waiting, workflow_name=workflow) == 1
    critical = value(first, "llmflow_alerts", level="CRITICAL")
    assert (
        critical is not None and value(second, "llmflow_alerts", level="CRITICAL") == critical + 1
    )
    assert {dict(labels)["level"] for _, labels in first["llmflow_alerts"]["samples"]} == {
        "INFO",
        "WARNING",
        "ERROR",
        "CRITICAL",
    }
    submitted = "llmflow_jobs_submitted_total"
    assert value(first, submitted, workflow_name=workflow, kind="submit") is None
    assert value(second, submitted, workflow_name=workflow, kind="submit") == 1
    assert value(second, submitted, workflow_name=workflow, kind="rerun") == 1
    approvals = "llmflow_approvals_total"
    assert [value(first, approvals, outcome=o) for o in ("approved", "rejected", "event")] == [
        0,
        0,
        0,
    ]
    assert value(second, approvals, outcome="rejected") == 1


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SilentServer:
    """Accepts TCP connections and never answers: a hung database. Counts connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()  # the blocked client read fails now, not at its connect timeout


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


async def test_database_down_leaves_out_the_mirror_gauges_and_still_answers(
    settings: Settings, engine: Engine, temporal_client: Client, closed_port: int
) -> None:
    down = make_engine(f"postgresql://llmflow:pw@127.0.0.1:{closed_port}/llmflow")
    app = build_app(settings, engine, temporal_client)
    try:
        async with serve(app) as api:
            app.state.engine = down  # started against the real one: the lifespan creates tables
            outage = await scrape(api)
            app.state.engine = engine
            recovered = await scrape(api)
    finally:
        down.dispose()
    assert value(outage, "llmflow_mirror_up") == 0
    assert "llmflow_jobs" not in outage and "llmflow_alerts" not in outage
    assert "llmflow_jobs_waiting" not in outage
    assert "llmflow_http_requests_total" in outage and "llmflow_build_info" in outage
    assert value(recovered, "llmflow_mirror_up") == 1 and "llmflow_jobs" in recovered


async def test_a_hanging_database_is_cut_off_by_the_scrape_timeout(
    settings: Settings, engine: Engine, temporal_client: Client, silent_server: SilentServer
) -> None:
    hung = make_engine(f"postgresql://llmflow:pw@127.0.0.1:{silent_server.port}/llmflow")
    app = build_app(settings, engine, temporal_client)
    app.state.metrics.db_timeout = 0.3
    try:
        async with serve(app) as api:
            app.state.engine = hung
            started = time.monotonic()
            first = await scrape(api)
            second = await scrape(api)  # joins the read still in flight instead of another
            elapsed = time.monotonic() - started
    finally:
        hung.dispose()
    assert value(first, "llmflow_mirror_up") == 0 and value(second, "llmflow_mirror_up") == 0
    assert "llmflow_jobs" not in first
    assert elapsed < 2.5, elapsed  # the connect timeout is 5 s; the scrape gave up at 0.3 s
    assert len(silent_server.accepted) == 1  # one read in flight, however many scrapes


def reference(text: str) -> dict[tuple[str, Labels], float]:
    """Every sample as prometheus_client's own parser reads it."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def samples(families: dict[str, dict]) -> dict[tuple[str, Labels], float]:
    return {
        (name, tuple(sorted(labels))): v
        for fam in families.values()
        for (name, labels), v in fam["samples"].items()
    }


async def test_the_reference_parser_reads_the_same_values(
    settings: Settings, engine: Engine, temporal_client: Client
) -> None:
    registry = MetricsRegistry(version='1.0 "rc" \\ \n')
    registry.observe_request("GET", "/a/{id}", 200, 0.2)
    registry.job_submitted("quickstart")
    text = registry.render().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["llmflow_http_request_duration_seconds"].type == "histogram"
    assert families["llmflow_build_info"].samples[0].labels == {"version": '1.0 "rc" \\ \n'}
    submitted = families["llmflow_jobs_submitted"].samples[0]
    assert submitted.labels == {"workflow_name": "quickstart", "kind": "submit"}
    assert submitted.value == 1
    assert reference(text) == samples(parse(text))

    # And a real gateway's page, with the mirror's gauges.
    app = build_app(settings, engine, temporal_client)
    async with serve(app) as api:
        await api.get("/api/v1/jobs/nope")
        resp = await api.get("/metrics")
    assert resp.headers["content-type"] == CONTENT_TYPE
    assert "llmflow_jobs" in parse(resp.text)
    assert reference(resp.text) == samples(parse(resp.text))


# Records what one gateway process would, then (with "render") prints the page.
PROCESS = """
import sys
from api.metrics import MetricsRegistry, record_decision, record_job_submitted
registry = MetricsRegistry(version="mp")
registry.observe_request("GET", "/api/v1/jobs/{job_id}", 200, 0.2)
record_job_submitted(registry, "quickstart", kind=sys.argv[1])
record_decision(registry, "approved")
if sys.argv[2:] == ["render"]:
    sys.stdout.write(registry.render().decode())
"""


def test_multiprocess_mode_sums_the_counts_of_every_process(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", PROCESS, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    run("submit")  # two processes that have exited by the scrape
    run("rerun")
    families = parse(run("submit", "render"))
    assert (
        sorted(p.name.split("_")[0] for p in tmp_path.iterdir())
        == ["counter"] * 3 + ["histogram"] * 3
    )  # one file per process and kind
    route = "/api/v1/jobs/{job_id}"
    assert (
        value(families, "llmflow_http_requests_total", method="GET", route=route, status="200") == 3
    )
    count = families["llmflow_http_request_duration_seconds"]["samples"]
    labels = (("method", "GET"), ("route", route))
    assert count[("llmflow_http_request_duration_seconds_count", labels)] == 3
    submitted = "llmflow_jobs_submitted_total"
    assert value(families, submitted, workflow_name="quickstart", kind="submit") == 2
    assert value(families, submitted, workflow_name="quickstart", kind="rerun") == 1
    assert value(families, "llmflow_approvals_total", outcome="approved") == 3
    assert value(families, "llmflow_approvals_total", outcome="event") == 0
    # Computed by the process that answers, not kept in files.
    assert value(families, "llmflow_mirror_up") == 0
    assert value(families, "llmflow_build_info", version="mp") == 1


async def test_scrapes_count_the_database_at_most_once_per_ttl(
    settings: Settings, engine: Engine, temporal_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.metrics

    reads: list[float] = []
    real = api.metrics._count_mirror

    def counting(eng: Engine) -> object:
        reads.append(time.monotonic())
        return real(eng)

    monkeypatch.setattr(api.metrics, "_count_mirror", counting)
    app = build_app(settings, engine, temporal_client)
    async with serve(app) as api_client:
        pages = [await scrape(api_client) for _ in range(30)]
    assert len(reads) == 1  # /metrics is unauthenticated: scraping must not load the database
    assert all(value(p, "llmflow_mirror_up") == 1 for p in pages)
    assert all(value(p, "llmflow_runs_stuck") == 0 for p in pages)


GATE_NAME = f"metrics_gate_{uuid.uuid4().hex[:8]}"  # its jobs alone in a shared test database
GATE = {
    "name": GATE_NAME,
    "version": "1.0.0",
    "steps": [
        {"id": "review", "type": "approval", "config": {"prompt": "Go on?"}},
        {"id": "paid", "type": "wait_for_event", "config": {"event": "payment.settled"}},
    ],
}


async def until_waiting_at(api: httpx.AsyncClient, job_id: str, path: str) -> None:
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        view = (await api.get(f"/api/v1/jobs/{job_id}")).json()
        if [w["path"] for w in view.get("waiting") or []] == [path]:
            return
        assert asyncio.get_running_loop().time() < deadline, view
        await asyncio.sleep(0.1)


async def test_submissions_reruns_approvals_and_events_are_counted(
    temporal_client: Client, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    defs = tmp_path / "defs"
    shutil.copytree(
        REPO / "workflow_defs", defs, ignore=shutil.ignore_patterns("__pycache__", "*.py")
    )
    (defs / f"{GATE_NAME}.json").write_text(json.dumps(GATE))
    gate_settings = settings.model_copy(update={"workflow_defs_dir": defs})
    app = create_app(gate_settings, engine=engine, temporal_client=temporal_client)
    app.state.metrics.mirror_ttl = 0

    def counts(families: dict) -> dict[str, Any]:
        submitted = "llmflow_jobs_submitted_total"
        approvals = "llmflow_approvals_total"
        return {
            "submit": value(families, submitted, workflow_name=GATE_NAME, kind="submit"),
            "rerun": value(families, submitted, workflow_name=GATE_NAME, kind="rerun"),
            **{o: value(families, approvals, outcome=o) for o in ("approved", "rejected", "event")},
            "waiting": value(families, "llmflow_jobs_waiting", workflow_name=GATE_NAME),
        }

    async with harness.running_worker(temporal_client, gate_settings, engine):
        async with serve(app) as api:
            job_id = (await api.post("/api/v1/jobs", json={"workflow_name": GATE_NAME})).json()[
                "job_id"
            ]
            await until_waiting_at(api, job_id, "review")
            waiting = counts(await scrape(api))
            approve = f"/api/v1/jobs/{job_id}/approvals/review"
            assert (await api.post(approve, json={"approved": True})).status_code == 200
            refused = await api.post(approve, json={"approved": True})  # decided already
            await until_waiting_at(api, job_id, "paid")
            event = await api.post(f"/api/v1/jobs/{job_id}/events/payment.settled", json={})
            assert event.status_code == 200, event.text
            assert (await poll(api, job_id))["status"] == "completed"

            key = {"Idempotency-Key": "metrics-rerun"}
            rerun = await api.post(f"/api/v1/jobs/{job_id}/rerun", headers=key)
            replay = await api.post(f"/api/v1/jobs/{job_id}/rerun", headers=key)  # not counted
            rerun_id = rerun.json()["job_id"]
            await until_waiting_at(api, rerun_id, "review")
            reject = f"/api/v1/jobs/{rerun_id}/approvals/review"
            assert (await api.post(reject, json={"approved": False})).status_code == 200
            await until_waiting_at(api, rerun_id, "paid")  # a rejection is an output too
            done = counts(await scrape(api))
            assert (await api.post(f"/api/v1/jobs/{rerun_id}/cancel")).status_code == 202
            await poll(api, rerun_id)

    assert refused.status_code == 409 and (rerun.status_code, replay.status_code) == (202, 200)
    assert waiting["waiting"] == 1 and waiting["submit"] == 1 and waiting["approved"] == 0
    assert done == {
        "submit": 1,
        "rerun": 1,
        "approved": 1,
        "rejected": 1,
        "event": 1,
        "waiting": 1,
    }
