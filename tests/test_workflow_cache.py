"""Jobs evicted from the worker's sticky cache come back correctly: with room for two cached
runs, twelve jobs that wait, loop and fan out are replayed from history again and again and
still end as they should."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.settings import Settings
from tests import harness
from worker.app import build_worker, worker_resources


def mock_llm(step_id: str, prompt: str) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "llm",
        "config": {"model": "m", "provider": "mock", "prompt_text": prompt, "mock_latency_ms": 50},
    }


DEFINITION = {
    "name": "evicted",
    "version": "1.0.0",
    "steps": [
        {"id": "pause", "type": "wait", "config": {"seconds": 0.5}},
        {
            "id": "fan",
            "type": "foreach",
            "config": {
                "items": ["a", "b", "c"],
                "max_concurrency": 2,
                "steps": [mock_llm("say", "Say ${item}")],
                "output": "${item}",
            },
        },
        {
            "id": "spin",
            "type": "loop",
            "config": {
                "steps": [mock_llm("again", "round ${iteration}")],
                "until": "iteration >= 3",
                "max_iterations": 5,
            },
        },
    ],
    "output": {"fan": "${steps.fan.output}", "rounds": "${steps.spin.status}"},
}


async def test_jobs_evicted_from_a_tiny_cache_still_complete(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    loaded = harness.load(DEFINITION, settings)
    async with worker_resources(settings, engine=engine) as res:
        async with build_worker(temporal_client, settings, res, max_cached_workflows=2):
            handles = [await harness.start(temporal_client, settings, loaded) for _ in range(12)]
            results = await asyncio.gather(*(h.result() for h in handles))
    for result in results:
        assert result.status == "completed", result.error
        assert result.output == {"fan": ["a", "b", "c"], "rounds": "completed"}
        spin = next(r for r in result.metadata.steps if r.path == "spin")
        assert spin.summary is not None and spin.summary["iterations"] == 3
