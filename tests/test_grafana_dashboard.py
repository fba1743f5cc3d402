"""deploy/grafana/llmflow.json only queries metrics that exist.

Every PromQL expression of the dashboard (panels and template variables) is parsed; each metric
it selects must be exported, with the labels it filters and groups on, by the real gateway's
/metrics or by a real worker's WORKER_METRICS_PORT endpoint, both scraped after one job through
the gateway that exercises an llm call, the response cache, a circuit breaker tripping, a failed
(tolerated) step, a webhook step and a completion webhook.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from core.settings import Settings
from core.temporal import metrics_runtime
from tests import harness
from tests.api_server import gateway
from tests.fakes.http_server import FakeHTTPServer, Response
from tests.fakes.llm_wire import openai_chat
from tests.test_api_jobs import poll

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy" / "grafana" / "llmflow.json"
REPO_DEFS = REPO / "workflow_defs"

# Grafana's built-in interval variables, and a template variable's value (always inside a
# label matcher's string): what Grafana would put there.
GRAFANA_INTERVALS = re.compile(
    r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}"
)
LABEL_VALUES = re.compile(
    r"^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_]\w*)\s*\)$"
)
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s")
LABEL = re.compile(r'([a-zA-Z_]\w*)="(?:[^"\\]|\\.)*"')


# --- the dashboard ------------------------------------------------------------------------------


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from panels(item.get("panels", []))  # a collapsed row holds its panels


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def expressions(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target."""
    out = []
    for panel in panels(board["panels"]):
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    return out


def variable_queries(board: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(variable, metric, label) of every `label_values(metric, label)` template variable."""
    out = []
    for var in board["templating"]["list"]:
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = LABEL_VALUES.match(query.strip())
        assert match, f"variable {var['name']}: unsupported query {query!r}"
        out.append((var["name"], match.group(1), match.group(2)))
    return out


def parse(expr: str) -> Any:
    return promql_parser.parse(GRAFANA_INTERVALS.sub("5m", expr))


def selectors(expr: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """([(metric, labels it matches on)], labels the expression aggregates by)."""
    found: list[tuple[str, set[str]]] = []
    grouped: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            labels = {m.name for m in node.matchers.matchers}
            assert node.name, f"selector without a metric name in {expr!r}"
            found.append((node.name, labels - {"__name__"}))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            if node.modifier.type == promql_parser.AggModifierType.By:
                grouped.update(node.modifier.labels)

    promql_parser.walk(parse(expr), visit)
    return found, grouped


def test_selectors_are_read_from_parsed_promql() -> None:
    metrics, grouped = selectors(
        'histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{x=~"$v"}[$__rate_interval])))'
        " / on() group_left sum(b) + max_over_time(c[1h:5m]) * 60"
    )
    assert metrics == [("a_bucket", {"x"}), ("b", set()), ("c", set())]
    assert grouped == {"le", "route"}


def test_the_dashboard_is_well_formed() -> None:
    board = dashboard()
    ids = [p["id"] for p in panels(board["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert board["uid"] == "llmflow" and board["schemaVersion"] >= 36
    for panel in panels(board["panels"]):
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, f"{panel['title']} is wider than the grid"
        if panel["type"] != "row":
            assert panel["targets"], f"{panel['title']} has no query"
    for where, expr in expressions(board):
        parse(expr)  # raises on invalid PromQL
        assert selectors(expr)[0], f"{where} selects no metric"


# --- the real exporters -------------------------------------------------------------------------


def exported(text: str) -> dict[str, set[str]]:
    """Sample name → every label name it carries, from a text exposition."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"unparsable sample line {line!r}"
        out.setdefault(match.group(1), set()).update(LABEL.findall(match.group(2) or ""))
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


WEATHER = "/weather/v1/current.json"
CHAT = "/openrouter/api/v1/chat/completions"
FLAKY = "/flaky/status"
STEP_HOOK = "/hooks/step"
JOB_HOOK = "/hooks/job"


def weather_step(step_id: str) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "external_api",
        "config": {
            "service": "weatherapi",
            "operation": "current",
            "parameters": {"q": "Oslo"},
            "cache_ttl": 60,
        },
    }


def metrics_definition(hook_url: str) -> dict[str, Any]:
    return {
        "name": "dashboard_metrics",
        "version": "1.0.0",
        "steps": [
            weather_step("weather"),
            weather_step("weather_again"),  # a cache hit
            {
                "id": "explain",
                "type": "llm",
                "config": {
                    "provider": "openrouter",
                    "model": "openai/gpt-4o-mini",
                    "prompt_text": "Explain ${input.topic}",
                },
            },
            {
                # Two 503s open the breaker (threshold 2), the third attempt is refused: the step
                # fails and the job goes on.
                "id": "flaky",
                "type": "external_api",
                "error_mode": "continue",
                "retry": {"max_retries": 2, "initial_delay": 0.05, "max_delay": 0.05},
                "config": {"service": "flaky", "operation": "status"},
            },
            {
                "id": "notify",
                "type": "webhook",
                "config": {"url": hook_url, "payload": {"done": True}},
            },
        ],
    }


@pytest.fixture
def metrics_settings(settings: Settings, tmp_path: Path, upstream: FakeHTTPServer) -> Settings:
    defs = tmp_path / "defs"
    shutil.copytree(REPO_DEFS, defs, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    services = json.loads((defs / "services.json").read_text())
    services["services"]["flaky"] = {
        "description": "A service that is down (tests).",
        "base_url": upstream.url + "/flaky",
        "cache_ttl": 0,
        "breaker": {"failure_threshold": 2, "recovery_timeout": 60},
        "operations": {"status": {"method": "GET", "path": "/status"}},
    }
    (defs / "services.json").write_text(json.dumps(services))
    defn = metrics_definition(upstream.url + STEP_HOOK)
    (defs / "dashboard_metrics.json").write_text(json.dumps(defn))
    return settings.model_copy(
        update={"workflow_defs_dir": defs, "llm_webhook_secret": "dashboard-hook-secret"}
    )


async def scrape_both(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> tuple[dict[str, set[str]], dict[str, set[str]], str]:
    upstream.route(
        "GET", WEATHER, Response(200, {"location": {"name": "Oslo"}, "current": {"temp_c": 3}})
    )
    upstream.route("POST", CHAT, openai_chat("Durable.", prompt_tokens=40, completion_tokens=9))
    upstream.route("GET", FLAKY, Response(503, {"error": "down"}))
    upstream.route("POST", STEP_HOOK, Response(200, {"ok": True}))
    upstream.route("POST", JOB_HOOK, Response(200, {"ok": True}))
    port = free_port()
    client = await Client.connect(
        temporal_client.service_client.config.target_host,
        namespace=temporal_client.namespace,
        data_converter=pydantic_data_converter,
        runtime=metrics_runtime(port, host="127.0.0.1"),
    )
    async with harness.running_worker(client, settings, engine):
        async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
            resp = await api.post(
                "/api/v1/jobs",
                json={
                    "workflow_name": "dashboard_metrics",
                    "input_data": {"topic": "dashboards"},
                    "webhook_url": upstream.url + JOB_HOOK,
                },
            )
            assert resp.status_code == 202, resp.text
            job = await poll(api, resp.json()["job_id"], within=60)
            for _ in range(100):  # the completion webhook is delivered after the job ends
                if upstream.requests_to(JOB_HOOK):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.5)  # the SDK's exporter publishes on an interval
            async with httpx.AsyncClient() as http:
                worker_text = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
            gateway_text = (await api.get("/metrics")).text
    assert job["status"] == "completed", job
    steps = {s["id"]: s for s in job["metadata"]["steps"]}
    assert steps["flaky"]["status"] == "failed" and steps["weather_again"]["status"] == "completed"
    assert upstream.requests_to(JOB_HOOK), "the completion webhook never came"
    return exported(gateway_text), exported(worker_text), worker_text


async def test_every_dashboard_query_selects_an_exported_metric(
    temporal_client: Client,
    metrics_settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
) -> None:
    gateway_metrics, worker_metrics, worker_text = await scrape_both(
        temporal_client, metrics_settings, engine, upstream
    )
    available = {**gateway_metrics, **worker_metrics}
    board = dashboard()
    problems = []
    for where, expr in expressions(board):
        metrics, grouped = selectors(expr)
        labels_here: set[str] = set()
        for metric, matched in metrics:
            if metric not in available:
                problems.append(f"{where}: {metric} is exported by neither gateway nor worker")
                continue
            labels_here |= available[metric]
            missing = matched - available[metric]
            if missing:
                problems.append(f"{where}: {metric} has no label {sorted(missing)}")
        missing_groups = grouped - labels_here - {"le"}
        if missing_groups and not any(p.startswith(where) for p in problems):
            problems.append(
                f"{where}: grouped by {sorted(missing_groups)}, not labels of its metrics"
            )
    for name, metric, label in variable_queries(board):
        if label not in available.get(metric, set()):
            problems.append(f"variable {name}: no {metric} with label {label}")
    assert not problems, "the dashboard queries what nothing exports:\n" + "\n".join(problems)

    # The worker's own metrics carry what the job did.
    def lines(prefix: str) -> list[str]:
        return [line for line in worker_text.splitlines() if line.startswith(prefix)]

    assert any(
        'provider="openrouter"' in line and 'kind="input"' in line and line.endswith(" 40")
        for line in lines("llmflow_llm_tokens{")
    )
    assert any('result="hit"' in line for line in lines("llmflow_cache_requests{"))
    # Dollars by workflow too, and the same dollars as the per-call histogram's sum.
    [spent] = [line for line in lines("llmflow_cost_usd_total{") if 'provider="openrouter"' in line]
    assert 'workflow="dashboard_metrics"' in spent and float(spent.rsplit(" ", 1)[1]) > 0
    [per_call] = [
        line for line in lines("llmflow_llm_cost_usd_sum{") if 'provider="openrouter"' in line
    ]
    assert float(spent.rsplit(" ", 1)[1]) == pytest.approx(float(per_call.rsplit(" ", 1)[1]))
    assert any(
        'step_type="external_api"' in line and 'workflow_name="dashboard_metrics"' in line
        for line in lines("llmflow_step_failures{")
    )
    assert any(
        'key="service:flaky"' in line and line.endswith(" 2")
        for line in lines("llmflow_breaker_state{")
    )
    assert any('to="open"' in line for line in lines("llmflow_breaker_transitions{"))
    deliveries = lines("llmflow_webhook_deliveries{")
    assert any('kind="step"' in line and 'outcome="delivered"' in line for line in deliveries)
    assert any('kind="completion"' in line and 'outcome="delivered"' in line for line in deliveries)
    assert any('status="completed"' in line for line in lines("llmflow_job_duration_count{"))
