"""mission_generation: the earlier service's client feature. The shipped 1.0.0 and a 0.9.0 in
the earlier service's dialect run end to end on the dev server against a wire-level OpenRouter;
plus `llm_usage` on llm outputs, the `markdown_sections` transform (including adversarial input)
and the mock provider following a prompt's reply outline."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client

from activities.llm.chat import ChatMessage, ChatRequest
from activities.llm.mock import fill_outline, mock_reply, outline_of
from activities.llm.response_format import parse_response_format
from core.settings import Settings
from core.step_outputs import LlmCallOutput
from tests import harness
from tests.conftest import make_settings
from tests.fakes.http_server import FakeHTTPServer
from tests.fakes.llm_wire import openai_chat
from tests.growth import MAX_GROWTH, SCALE, growth
from workflow_defs.catalog import load_catalog
from workflow_defs.inputs import validate_input
from workflow_defs.loader import LoadedDefinition, load_definition_file
from workflow_defs.services import load_services
from workflow_defs.transforms import TransformError, apply_transform, check_transform_config
from workflow_defs.validation import step_output_keys

CHAT = "/openrouter/api/v1/chat/completions"
EARLIER = Path(__file__).parent / "fixtures" / "earlier_dialect"
HISTORIES = Path(__file__).parent / "histories"
SECTIONS = [
    "executive_summary",
    "risk_assessment",
    "recommended_bundles",
    "survival_skills_needed",
    "day_by_day_simulation",
    "next_steps",
]

# The exact shape the earlier service's client submits.
CLIENT_INPUT: dict[str, Any] = {
    "formData": {
        "scenarios": ["flood", "power_outage"],
        "location": {"city": "Austin", "state": "TX", "climateZone": "hot-humid"},
        "familySize": 4,
        "durationDays": 3,
        "homeType": "apartment",
    },
    "bundles": [
        {
            "id": "b-72h",
            "name": "72-Hour Family Kit",
            "description": "Food and water for four people",
            "price": 149.99,
            "category": "food_water",
        },
        {
            "id": "b-dark",
            "name": "Blackout Pack",
            "description": "Lanterns, radio and a power bank",
            "price": 89,
            "category": "power",
        },
    ],
    "familyDetails": "Two adults, a 6-year-old and a grandmother of 74",
    "mobility": "The grandmother uses a walker",
}

MISSION_PLAN = """# Mission Plan: Austin, TX

## Executive Summary
Your family of four can ride out a flood or a blackout at home for three days.

## Risk Assessment
- **Flood**: likely in spring; the ground floor may take water.
- **Power outage**: heat is the danger in summer.

## Recommended Bundles
- **72-Hour Family Kit** (b-72h, $149.99): covers food and water for all three days.
- **Blackout Pack** (b-dark, $89): light and a charged phone.

## Survival Skills Needed
- **Water storage**: fill containers before the storm.

## Day-by-Day Simulation
### Day 1
Power goes out at 6 pm; you switch to lanterns.
### Day 2
Water rises on the street; you stay upstairs.
### Day 3
Power returns in the evening.

## Next Steps
1. Order the 72-Hour Family Kit this week.
2. Agree a meeting point.
"""


def route_chat(upstream: FakeHTTPServer, content: str = MISSION_PLAN) -> None:
    upstream.route(
        "POST",
        CHAT,
        openai_chat(
            content,
            model="anthropic/claude-3.5-sonnet",
            prompt_tokens=1500,
            completion_tokens=900,
        ),
    )


def shipped(settings: Settings) -> LoadedDefinition:
    loaded = load_catalog(settings).definitions.get("mission_generation", "1.0.0")
    assert loaded is not None
    return loaded


def earlier_dialect(settings: Settings) -> LoadedDefinition:
    # Loaded from the fixture folder with its own prompts directory, file untouched.
    services = load_services(settings.workflow_defs_dir / "services.json")
    return load_definition_file(
        EARLIER / "mission_generation.json",
        prompts_dir=EARLIER / "prompts",
        has_service=services.has,
    )


def assert_usage_filled(output: dict[str, Any], step_id: str) -> None:
    usage = output["llm_usage"]
    assert usage is not None
    assert set(usage) == {
        "model",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "cost_usd",
        "duration_ms",
    }
    assert usage["model"] == "anthropic/claude-3.5-sonnet"
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (
        1500,
        900,
        2400,
    )
    # $3 / $15 per 1M tokens
    assert usage["cost_usd"] == pytest.approx(1500 * 3 / 1e6 + 900 * 15 / 1e6)
    assert isinstance(usage["duration_ms"], int) and usage["duration_ms"] >= 0
    assert output["cost_data"] == {
        "total_tokens": 2400,
        "cost_usd": usage["cost_usd"],
        "llm_calls": [
            {
                "step_id": step_id,
                "model": "anthropic/claude-3.5-sonnet",
                "total_tokens": 2400,
                "cost_usd": usage["cost_usd"],
            }
        ],
    }


# --- end to end on the dev server ------------------------------------------------------------


async def test_shipped_mission_generation_with_the_clients_input(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    route_chat(upstream)
    loaded = shipped(settings)
    assert loaded.warnings == []
    validated = validate_input(loaded.definition, CLIENT_INPUT)  # what the gateway checks
    async with harness.running_worker(temporal_client, settings, engine):
        result = await harness.run(temporal_client, settings, loaded, validated)

    assert result.status == "completed", result.error
    output = result.output
    assert list(output) == ["mission_plan", "parsed_sections", "llm_usage", "cost_data"]
    assert output["mission_plan"] == MISSION_PLAN
    sections = output["parsed_sections"]
    assert list(sections) == SECTIONS
    assert all(isinstance(v, str) and v for v in sections.values()), sections
    assert sections["executive_summary"].startswith("Your family of four")
    assert "### Day 1" in sections["day_by_day_simulation"]
    assert "### Day 3" in sections["day_by_day_simulation"]
    assert sections["next_steps"].endswith("2. Agree a meeting point.")
    assert_usage_filled(output, "generate_plan")
    assert result.metadata.total_tokens == 2400

    prompt = upstream.requests_to(CHAT)[0].json()["messages"][-1]["content"]
    assert "Austin, TX (climate zone: hot-humid)" in prompt
    assert "flood, power_outage" in prompt and "apartment" in prompt
    assert "- 72-Hour Family Kit (id: b-72h; category: food_water; price: 149.99)" in prompt
    assert "uses a walker" in prompt and "grandmother of 74" in prompt
    assert "up to day 3" in prompt
    assert "${" not in prompt and "{{include" not in prompt

    # Every key the llm step's output has is one validation knows (no false warnings).
    plan_output = result.steps["generate_plan"].output
    known = step_output_keys(loaded.definition.steps[3])
    assert known is not None and set(plan_output) <= known


async def test_earlier_dialect_definition_reads_llm_usage_unmodified(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    route_chat(upstream)
    loaded = earlier_dialect(settings)
    assert (loaded.name, loaded.version) == ("mission_generation", "0.9.0")
    assert loaded.warnings == []
    async with harness.running_worker(temporal_client, settings, engine):
        result = await harness.run(temporal_client, settings, loaded, CLIENT_INPUT)

    assert result.status == "completed", result.error
    assert all(s.status == "completed" for s in result.steps.values()), result.steps
    output = result.output
    assert set(output) == {"mission_plan", "parsed_sections", "llm_usage", "cost_data"}
    assert output["mission_plan"] == MISSION_PLAN
    assert list(output["parsed_sections"]) == SECTIONS
    assert all(output["parsed_sections"].values())
    assert_usage_filled(output, "generate_mission")
    assert not any(w for s in result.steps.values() for w in s.warnings if "not set" in w)
    prompt = upstream.requests_to(CHAT)[0].json()["messages"][-1]["content"]
    assert "Location: Austin, TX (climate zone hot-humid)" in prompt


async def test_mission_generation_offline_on_the_mock_provider(
    temporal_client: Client, database_url: str, engine: Engine, upstream: FakeHTTPServer
) -> None:
    """`make dev` without a key: the mock follows the prompt's outline, so the demo shows a
    mission plan with all six sections filled."""
    dev = make_settings(
        temporal_client,
        database_url,
        upstream.url,
        environment="development",
        openrouter_api_key=None,
    )
    loaded = shipped(dev)
    async with harness.running_worker(temporal_client, dev, engine):
        result = await harness.run(temporal_client, dev, loaded, CLIENT_INPUT)

    assert result.status == "completed", result.error
    assert upstream.requests_to(CHAT) == []
    output = result.output
    assert output["mission_plan"].startswith("[mock:anthropic/claude-3.5-sonnet]")
    assert "# Mission plan: Austin, TX" in output["mission_plan"]
    sections = output["parsed_sections"]
    assert list(sections) == SECTIONS and all(sections.values()), sections
    assert "household of 4 in Austin" in sections["executive_summary"]
    assert "flood, power_outage" in sections["risk_assessment"]
    assert "<" not in output["mission_plan"] and "${" not in output["mission_plan"]
    assert output["llm_usage"]["total_tokens"] > 0 and output["llm_usage"]["cost_usd"] == 0
    assert output["cost_data"]["llm_calls"][0]["step_id"] == "generate_plan"
    assert any("mock provider" in w for w in result.steps["generate_plan"].warnings)


@pytest.mark.skipif(
    not os.environ.get("LLMFLOW_RECORD_HISTORIES"),
    reason="set LLMFLOW_RECORD_HISTORIES=1 to re-record",
)
async def test_record_mission_generation_history(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    """The committed history tests/test_replay.py replays for this shipped workflow."""
    route_chat(upstream)
    loaded = shipped(settings)
    async with harness.running_worker(temporal_client, settings, engine):
        handle = await harness.start(temporal_client, settings, loaded, CLIENT_INPUT)
        result = await handle.result()
        history = await handle.fetch_history()
    assert result.status == "completed", result
    (HISTORIES / "mission_generation.json").write_text(history.to_json() + "\n")


# --- llm_usage ---------------------------------------------------------------------------------


def test_llm_usage_is_derived_and_survives_results_recorded_before_it() -> None:
    recorded = {  # an llm_call result as histories written before llm_usage hold it
        "content": "hi",
        "data": None,
        "model": "openai/gpt-4o-mini",
        "provider": "openrouter",
        "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
        "cost_usd": 0.0000045,
        "duration_ms": 321,
        "finish_reason": "stop",
        "attempt": 1,
        "warnings": [],
    }
    out = LlmCallOutput.model_validate(recorded)
    expected = {
        "model": "openai/gpt-4o-mini",
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
        "cost_usd": 0.0000045,
        "duration_ms": 321,
    }
    assert out.llm_usage.model_dump() == expected
    dumped = out.model_dump(mode="json", exclude={"attempt", "warnings"})
    assert dumped["llm_usage"] == expected
    assert {k: v for k, v in dumped.items() if k != "llm_usage"} == {
        k: v for k, v in recorded.items() if k not in ("attempt", "warnings")
    }
    # Round trip through JSON (the Temporal payload) keeps it, and it can't drift.
    again = LlmCallOutput.model_validate_json(out.model_dump_json())
    assert again.llm_usage == out.llm_usage


# --- markdown_sections -------------------------------------------------------------------------


def sections_of(text: Any, **config: Any) -> Any:
    return apply_transform("markdown_sections", text, config)


def test_sections_split_on_h1_to_h3_with_snake_case_keys() -> None:
    assert sections_of(MISSION_PLAN, sections=SECTIONS) == {
        "executive_summary": (
            "Your family of four can ride out a flood or a blackout at home for three days."
        ),
        "risk_assessment": (
            "- **Flood**: likely in spring; the ground floor may take water.\n"
            "- **Power outage**: heat is the danger in summer."
        ),
        "recommended_bundles": (
            "- **72-Hour Family Kit** (b-72h, $149.99): covers food and water for all three "
            "days.\n- **Blackout Pack** (b-dark, $89): light and a charged phone."
        ),
        "survival_skills_needed": "- **Water storage**: fill containers before the storm.",
        "day_by_day_simulation": (
            "### Day 1\nPower goes out at 6 pm; you switch to lanterns.\n"
            "### Day 2\nWater rises on the street; you stay upstairs.\n"
            "### Day 3\nPower returns in the evening."
        ),
        "next_steps": "1. Order the 72-Hour Family Kit this week.\n2. Agree a meeting point.",
    }


def test_without_a_list_every_heading_is_a_key_and_subsections_nest() -> None:
    text = "intro dropped\n# Plan\nP\n## Part A\nA\n### Detail\nD\n#### Deeper\nE\n## Part B\nB"
    assert sections_of(text) == {
        "plan": "P\n## Part A\nA\n### Detail\nD\n#### Deeper\nE\n## Part B\nB",
        "part_a": "A\n### Detail\nD\n#### Deeper\nE",
        "detail": "D\n#### Deeper\nE",
        "part_b": "B",
    }


@pytest.mark.parametrize(
    ("heading", "key"),
    [
        ("## Day-by-Day Simulation", "day_by_day_simulation"),
        ("## 1. Executive Summary", "executive_summary"),
        ("## 2) Risk Assessment", "risk_assessment"),
        ("## 2024 Budget", "2024_budget"),
        ("## **Next Steps**", "next_steps"),
        ("## Next Steps ##", "next_steps"),
        ("##Next Steps", "next_steps"),
        ("   ### Food & Water: 3 days!", "food_water_3_days"),
        ("## Préparation Générale", "préparation_générale"),
        ("#\tTabbed", "tabbed"),
    ],
)
def test_heading_keys(heading: str, key: str) -> None:
    assert sections_of(f"{heading}\nbody") == {key: "body"}


@pytest.mark.parametrize(
    "line",
    ["#hashtag", "#### Too deep", "    ## Indented code", "####### Seven", "Text ## not at start"],
)
def test_lines_that_do_not_split(line: str) -> None:
    assert sections_of(f"# Top\n{line}\nafter") == {"top": f"{line.strip()}\nafter"}


def test_fenced_code_and_a_wrapped_reply() -> None:
    inner = "## Steps\n```bash\n## not a heading\n```\n~~~~\n# nor this\n~~~~\n## Next\nN"
    assert sections_of(inner) == {
        "steps": "```bash\n## not a heading\n```\n~~~~\n# nor this\n~~~~",
        "next": "N",
    }
    wrapped = f"\n```markdown\n{inner}\n```\n"
    assert sections_of(wrapped) == sections_of(inner)


def test_crlf_duplicates_and_empty_sections() -> None:
    text = "## Notes\r\nfirst\r\n## Empty\r\n## Notes\r\nsecond\r\n##\r\norphan"
    assert sections_of(text) == {"notes": "first\n\nsecond", "empty": ""}


def test_sections_list_fixes_keys_order_and_missing_default() -> None:
    text = "## Next Steps\nGo.\n## Extra\nDropped."
    assert sections_of(text, sections=["Executive Summary", "next_steps"]) == {
        "executive_summary": "",
        "next_steps": "Go.",
    }
    assert sections_of(text, sections=["executive_summary"], default=None) == {
        "executive_summary": None
    }


def test_input_forms() -> None:
    assert sections_of(None) == {}
    assert sections_of(None, sections=["a"]) == {"a": ""}
    assert sections_of({"content": "## A\nx", "model": "m"}) == {"a": "x"}  # a whole llm output
    assert sections_of("") == {}
    with pytest.raises(TransformError, match="input: must be markdown text"):
        sections_of(["## A"])


def test_config_checked_at_load() -> None:
    assert check_transform_config("markdown_sections", {}) == []
    assert check_transform_config("markdown_sections", {"sections": "${input.keys}"}) == []
    assert check_transform_config("markdown_sections", {"sections": "a"}) == [
        ("config.sections", "must be an array (got string)")
    ]
    assert check_transform_config("markdown_sections", {"sections": ["ok", 3, "!!"]}) == [
        ("config.sections[1]", "must be a string (got integer)"),
        ("config.sections[2]", "'!!' has no letters or digits"),
    ]


MB = 1_000_000
ADVERSARIAL = {
    "heading then 40,000 spaces, repeated": ("# T" + " " * 40_000 + "x\n") * 25,
    "heading then spaces to 1 MB": "## Title" + " " * MB,
    "one line of #": "#" * MB,
    "heading of # after a space": "# " + "#" * MB,
    "heading of open brackets": "## " + "(" * MB,
    "heading of punctuation": "## " + "-_ *" * (MB // 4),
    "many tiny headings": "# a\n" * (MB // 4),
    "the same heading with a body": "## a\nx\n" * (MB // 7),
    "nested levels": "# a\n## b\n### c\nx\n" * (MB // 17),
    "fence openers": "```\n" * (MB // 4),
    "unclosed fence then headings": "```\n" + "## h\n" * (MB // 5),
    "indent runs": (" " * 3 + "#" * 3 + " " * 50 + "\n") * (MB // 57),
    "distinct headings": "".join(f"## h{i:07}\n" for i in range(MB // 11)),
    "backticks in a line": "`" * MB,
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_megabyte_is_fast(name: str) -> None:
    # At most the transform input cap (1,000,000 characters): past it the step refuses at once.
    text = ADVERSARIAL[name][:MB]
    assert len(text) >= MB * 0.99
    ratio = growth(lambda part: sections_of(part, sections=SECTIONS), text)
    assert ratio < MAX_GROWTH, f"{name}: {ratio:.1f}x the time for {SCALE}x the input"


# --- the mock provider follows a prompt's outline ---------------------------------------------


def mock_request(prompt: str, response_format: Any = None) -> ChatRequest:
    return ChatRequest(
        model="demo",
        messages=[ChatMessage("user", prompt)],
        system=None,
        response_format=parse_response_format(response_format),
    )


def test_mock_answers_with_the_last_markdown_outline_filled() -> None:
    prompt = (
        "Plan things.\n```json\n{}\n```\n```markdown\nnot this one\n```\n"
        "Use this shape:\n````md\n## Summary\n<Short for | long>\n```\ninner fence\n```\n"
        "## Steps\n1. <Do it.>\n````\nThanks."
    )
    assert outline_of(prompt) == (
        "## Summary\n<Short for | long>\n```\ninner fence\n```\n## Steps\n1. <Do it.>"
    )
    assert mock_reply(mock_request(prompt)) == (
        "[mock:demo]\n\n## Summary\nShort for\n```\ninner fence\n```\n## Steps\n1. Do it."
    )


def test_mock_without_an_outline_or_for_json_is_unchanged() -> None:
    assert mock_reply(mock_request("Plan a trip. Then more.")) == "[mock:demo] Plan a trip.…"
    assert outline_of("```python\nprint()\n```") is None
    assert outline_of("```markdown\n## never closed") is None
    as_json = mock_reply(mock_request("```markdown\n## A\n```", "json"))
    assert json.loads(as_json) == {"result": "```markdown ## A ```"}
    assert fill_outline("a <b> c <d | e> <>") == "a b c d"
