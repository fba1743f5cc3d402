"""WORKER_METRICS_PORT: the worker exports Temporal SDK metrics plus llmflow's own (cache)."""

from __future__ import annotations

import asyncio
import socket

import httpx
from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from core.settings import Settings
from core.temporal import metrics_runtime
from tests import harness
from tests.fakes.http_server import FakeHTTPServer, Response

WEATHER = "/weather/v1/current.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_cache_hits_and_misses_are_exported_with_the_sdk_metrics(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route(
        "GET", WEATHER, Response(200, {"location": {"name": "Oslo"}, "current": {"temp_c": 3}})
    )
    port = free_port()
    client = await Client.connect(
        temporal_client.service_client.config.target_host,
        namespace=temporal_client.namespace,
        data_converter=pydantic_data_converter,
        runtime=metrics_runtime(port, host="127.0.0.1"),
    )
    step = {
        "id": "weather",
        "type": "external_api",
        "config": {
            "service": "weatherapi",
            "operation": "current",
            "parameters": {"q": "Oslo"},
            "cache_ttl": 60,
        },
    }
    defn = {"name": "metrics", "version": "1.0.0", "steps": [step, {**step, "id": "weather_again"}]}
    async with harness.running_worker(client, settings, engine):
        result = await harness.run(client, settings, harness.load(defn, settings))
        await asyncio.sleep(1.5)  # the exporter publishes on an interval
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
    assert result.steps["weather_again"].output["cached"] is True
    assert len(upstream.requests_to(WEATHER)) == 1
    lines = [line for line in text.splitlines() if line.startswith("llmflow_cache_requests")]
    hits = [line for line in lines if 'result="hit"' in line and 'service="weatherapi"' in line]
    misses = [line for line in lines if 'result="miss"' in line and 'service="weatherapi"' in line]
    assert hits and float(hits[0].rsplit(" ", 1)[1]) >= 1
    assert misses and float(misses[0].rsplit(" ", 1)[1]) >= 1
    assert "temporal_activity_execution_latency" in text  # the SDK's own metrics come along
