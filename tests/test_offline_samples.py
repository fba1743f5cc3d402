"""A development stack with no keys shows realistic results: the shipped services answer with
sample data in their real shapes, the mock provider follows the workflow's format and varies
with the input, and every such step says so in its warnings. Never outside development."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client

from activities.samples import sample_answer
from core.settings import Settings
from tests import harness
from workflow_defs.catalog import load_catalog

NO_KEYS = {
    "environment": "development",
    "weatherapi_api_key": None,
    "google_services_api_key": None,
    "openrouter_api_key": None,
}


def offline(settings: Settings) -> Settings:
    return settings.model_copy(update=NO_KEYS)


async def run_shipped(
    client: Client,
    settings: Settings,
    engine: Engine,
    name: str,
    version: str,
    data: dict[str, Any],
) -> Any:
    loaded = load_catalog(settings).definitions.get(name, version)
    assert loaded is not None
    async with harness.running_worker(client, settings, engine):
        return await harness.run(client, settings, loaded, data)


@pytest.mark.parametrize("version", ["3.0.0", "3.1.0"])
async def test_emergency_contacts_offline_has_contacts_and_says_they_are_samples(
    temporal_client: Client, settings: Settings, engine: Engine, version: str
) -> None:
    cfg = offline(settings)
    here = {"city": "Oakland", "state": "CA", "lat": 37.80, "lng": -122.27, "family_size": 3}
    there = {**here, "city": "Denver", "state": "CO", "lat": 39.74, "lng": -104.99}
    first = await run_shipped(temporal_client, cfg, engine, "emergency_contacts", version, here)
    second = await run_shipped(temporal_client, cfg, engine, "emergency_contacts", version, there)
    for result in (first, second):
        assert result.status == "completed"
        contacts = result.output["contacts"]
        assert len(contacts) == 3 and len(result.output["meeting_locations"]) == 3
        assert all(c["name"].startswith("Sample ") and c["phone"] for c in contacts)
        records = {r.id: r for r in result.metadata.steps}
        for step in ("fetch_weather", "fetch_hospitals", "fetch_police", "fetch_fire_stations"):
            assert any(w.startswith("sample data:") for w in records[step].warnings), step
        assert any("mock provider" in w for w in records["generate_contacts"].warnings)
    # Another place, other sample answers.
    assert [c["phone"] for c in first.output["contacts"]] != [
        c["phone"] for c in second.output["contacts"]
    ]


async def test_ticket_triage_offline_classifies_by_the_message(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    cfg = offline(settings)
    seen = set()
    for message in ("I was charged twice", "The app crashes on start", "How do I export?"):
        result = await run_shipped(
            temporal_client, cfg, engine, "ticket_triage", "1.0.0", {"message": message}
        )
        assert result.status == "completed", result.error
        classify = next(r for r in result.metadata.steps if r.id == "classify")
        seen.add((classify.output["data"]["category"], classify.output["data"]["urgency"]))
    assert len(seen) > 1  # not the same answer whatever the ticket says


async def test_outside_development_a_missing_key_still_fails(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    cfg = settings.model_copy(update={**NO_KEYS, "environment": "test"})
    loaded = load_catalog(cfg).definitions.get("emergency_contacts", "3.1.0")
    assert loaded is not None
    async with harness.running_worker(temporal_client, cfg, engine):
        _, failure = await harness.run_failing(
            temporal_client, cfg, loaded, {"city": "Oakland", "lat": 37.8, "lng": -122.27}
        )
    details = failure.cause.details[0]  # type: ignore[attr-defined]
    assert details["type"] == "CONFIG_ERROR"


def test_samples_keep_the_services_shapes() -> None:
    weather = sample_answer("weatherapi", "current", {"lat": 1.5, "lng": 2.5})
    assert weather is not None and {"location", "current"} <= set(weather)
    assert weather["current"]["condition"]["text"]
    places = sample_answer(
        "google_places", "nearby_search", {"location": "1.5,2.5", "type": "police"}
    )
    assert places is not None and places["status"] == "OK" and len(places["results"]) == 3
    assert sample_answer("strapi", "find_pipeline_deals", {}) is None
