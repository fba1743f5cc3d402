"""Parallel: emergency_contacts 3.0.0 (four fetches one after another) against 3.1.0 (the same
four in one `parallel` step), the upstreams answering after a fixed latency.

Both versions run on one worker against the same wire-level fakes (WeatherAPI, Places) with
300 ms per answer, and the mock LLM; the number is the ratio of median job durations.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.common import Server, median, notes, print_table, ratio, rounded
from core.contracts import InterpreterInput
from core.temporal import start_job
from tests.fakes.http_server import FakeHTTPServer, Response
from worker.app import build_worker, worker_resources
from workflow_defs.loader import load_definition_file
from workflow_defs.services import load_services

DEFS = Path(__file__).resolve().parents[1] / "workflow_defs"
LATENCY_S = 0.3
INPUT: dict[str, Any] = {
    "lat": 37.7749,
    "lng": -122.4194,
    "city": "San Francisco",
    "state": "CA",
    "country": "USA",
    "scenarios": ["earthquake"],
    "family_size": 3,
    "duration": "72 hours",
    "user_tier": "free",
    "static_contacts": [],
}


async def run(server: Server, *, quick: bool) -> dict[str, Any]:
    runs = 3 if quick else 8
    with FakeHTTPServer() as upstream:
        upstream.route(
            "GET",
            "/weather/v1/current.json",
            Response(200, {"current": {"temp_c": 14.0}}, delay=LATENCY_S),
        )
        upstream.route(
            "GET",
            "/maps/api/place/nearbysearch/json",
            Response(200, {"status": "OK", "results": []}, delay=LATENCY_S),
        )
        settings = server.settings(
            "parallel",
            weatherapi_base_url=f"{upstream.url}/weather/v1",
            weatherapi_api_key="bench-weather-key",
            google_places_base_url=upstream.url,
            google_services_api_key="bench-places-key",
            llm_mock_latency_ms=0,
        )
        services = load_services(DEFS / "services.json")
        versions = {
            name: load_definition_file(
                DEFS / file, prompts_dir=settings.prompts_dir, has_service=services.has
            )
            for name, file in (
                ("3.0.0 sequential", "emergency_contacts.json"),
                ("3.1.0 parallel", "emergency_contacts_parallel.json"),
            )
        }
        durations: dict[str, list[float]] = {name: [] for name in versions}
        async with worker_resources(settings) as res:
            async with build_worker(server.client, settings, res):
                for i in range(runs):
                    for name, loaded in versions.items():
                        inp = InterpreterInput(
                            job_id=f"bench-parallel-{name[:5]}-{i}-{time.time_ns()}",
                            definition=loaded.snapshot(),
                            # A new place each run: the response cache must not answer.
                            input_data={**INPUT, "lat": 10 + i + len(name) / 100},
                        )
                        t0 = time.perf_counter()
                        handle = await start_job(server.client, settings, inp)
                        result = await handle.result()
                        durations[name].append(time.perf_counter() - t0)
                        assert result.status == "completed", json.dumps(result.error)
    seq, par = (median(durations[n]) for n in versions)
    rows = [[name, rounded(median(d) * 1000, 0)] for name, d in durations.items()]
    print_table("emergency_contacts: job duration (ms, median)", ["version", "ms"], rows)
    notes(
        f"upstream latency {int(LATENCY_S * 1000)} ms per call; {runs} runs each;",
        f"3.1.0 takes {rounded(ratio(par, seq), 2)}x the time of 3.0.0",
    )
    return {
        "latency_ms": int(LATENCY_S * 1000),
        "runs": runs,
        "sequential_ms": rounded(seq * 1000, 0),
        "parallel_ms": rounded(par * 1000, 0),
        "parallel_over_sequential": rounded(ratio(par, seq), 3),
    }
