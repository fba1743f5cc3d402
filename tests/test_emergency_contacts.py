"""The earlier service's emergency_contacts.json (from the seed folder beside the checkout, unmodified) and llmflow's own
version, run end to end on the dev server against wire-level WeatherAPI, Places and OpenRouter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.settings import Settings
from tests import harness
from tests.conftest import PLACES_KEY, SHARED_DIR, WEATHER_KEY
from tests.fakes.http_server import FakeHTTPServer, Request, Response
from tests.fakes.llm_wire import openai_chat
from workflow_defs.loader import load_definition_file
from workflow_defs.services import load_services

CHAT = "/openrouter/api/v1/chat/completions"
NEARBY = "/maps/api/place/nearbysearch/json"
WEATHER = "/weather/v1/current.json"
SEED = SHARED_DIR / "seed" / "emergency_contacts.json"

MARKDOWN = """## Emergency Contacts Analysis
### St. Mary Hospital
**Phone**: +1 415-555-0100
**Address**: 450 Stanyan St, San Francisco
**Website**: https://stmary.example
**Category**: medical
**Priority**: critical
**Fit Score**: 92
**Reasoning**: Closest emergency department.
**Relevant Scenarios**: earthquake, fire
**24/7 Available**: yes

### Notes without fields
Just prose, not a contact.

### Station 12 Fire Department
**Phone**: 911
**Category**: government
**Priority**: important
**Fit Score**: 80/100
**Relevant Scenarios**: fire
**24/7 Available**: yes

## Meeting Locations
### Primary Meeting Location: Golden Gate Park Field
**Address**: JFK Dr, San Francisco
**Description**: Large open field.
**Reasoning**: Away from buildings.
**Practical Details**: Free parking nearby, wheelchair accessible paths.
**Suitable For**: earthquake, fire
"""


def places(req: Request) -> Response:
    kind = req.query.get("type", "")
    return Response(
        200,
        {
            "status": "OK",
            "results": [
                {
                    "place_id": f"{kind}-1",
                    "name": f"Nearest {kind}",
                    "vicinity": "1 Main St",
                    "geometry": {"location": {"lat": 37.77, "lng": -122.42}},
                }
            ],
        },
    )


def route_upstream(upstream: FakeHTTPServer) -> None:
    upstream.route(
        "GET",
        WEATHER,
        Response(
            200,
            {
                "location": {"name": "San Francisco"},
                "current": {"temp_c": 14.0, "condition": {"text": "Fog"}},
            },
        ),
    )
    upstream.route("GET", NEARBY, places)
    upstream.route(
        "POST",
        CHAT,
        openai_chat(
            MARKDOWN, model="anthropic/claude-3.5-sonnet", prompt_tokens=900, completion_tokens=400
        ),
    )


INPUT: dict[str, Any] = {
    "lat": 37.7749,
    "lng": -122.4194,
    "city": "San Francisco",
    "state": "CA",
    "country": "USA",
    "scenarios": ["earthquake", "fire"],
    "family_size": 3,
    "duration": "72 hours",
    "user_tier": "premium",
    "static_contacts": [],
}


DEFINITIONS = {
    "seed": SEED,
    "shipped": Path(__file__).resolve().parents[1] / "workflow_defs" / "emergency_contacts.json",
    "parallel": Path(__file__).resolve().parents[1]
    / "workflow_defs"
    / "emergency_contacts_parallel.json",
}


@pytest.mark.parametrize("which", sorted(DEFINITIONS))
async def test_emergency_contacts_runs_end_to_end(
    which: str,
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
) -> None:
    if not DEFINITIONS[which].exists():
        pytest.skip(f"{DEFINITIONS[which]} is not beside this checkout")
    route_upstream(upstream)
    services = load_services(settings.workflow_defs_dir / "services.json")
    loaded = load_definition_file(
        DEFINITIONS[which], prompts_dir=settings.prompts_dir, has_service=services.has
    )
    async with harness.running_worker(temporal_client, settings, engine):
        handle = await harness.start(temporal_client, settings, loaded, INPUT)
        result = await handle.result()
        history = await handle.fetch_history()
    if which == "parallel":
        # The four calls were all scheduled before the first one came back.
        kinds = [e.WhichOneof("attributes") for e in history.events]
        scheduled = "activity_task_scheduled_event_attributes"
        first_done = kinds.index("activity_task_completed_event_attributes")
        assert kinds[:first_done].count(scheduled) >= 4  # the "running" mirror write, too
        assert loaded.version == "3.1.0"

    assert result.status == "completed"
    assert all(s.status == "completed" for s in result.steps.values()), result.steps
    contacts = result.output["contacts"]
    assert [c["name"] for c in contacts] == ["St. Mary Hospital", "Station 12 Fire Department"]
    assert contacts[0]["fit_score"] == 92 and contacts[0]["available_24hr"] is True
    assert contacts[0]["relevant_scenarios"] == ["earthquake", "fire"]
    assert contacts[1]["fit_score"] == 80
    location = result.output["meeting_locations"][0]
    assert location["priority"] == "primary" and location["has_parking"] is True
    assert location["is_accessible"] is True

    weather_req = upstream.requests_to(WEATHER)[0]
    assert weather_req.query["q"] == "37.7749,-122.4194" and weather_req.query["aqi"] == "no"
    assert weather_req.query["key"] == WEATHER_KEY
    kinds = sorted(r.query["type"] for r in upstream.requests_to(NEARBY))
    assert kinds == ["fire_station", "hospital", "police"]
    hospital = next(r for r in upstream.requests_to(NEARBY) if r.query["type"] == "hospital")
    assert hospital.query["keyword"] == "emergency" and hospital.query["radius"] == "8000"
    assert hospital.query["key"] == PLACES_KEY

    prompt = upstream.requests_to(CHAT)[0].json()["messages"][-1]["content"]
    assert "San Francisco, CA, USA" in prompt
    assert "Nearest hospital" in prompt and "Fog" in prompt
    assert "{{include" not in prompt and "${" not in prompt
    assert result.metadata.total_tokens == 1300 and result.metadata.total_cost_usd > 0
