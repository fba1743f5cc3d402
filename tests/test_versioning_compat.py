"""A newer version of a workflow accepts every input an older one accepted.

Two halves: the comparison `llmflow validate` warns with (workflow_defs/version_compat.py, pure,
tested as a unit), and the case that made the rule: the earlier service's documented check
request (`static_contacts: ""`, no version named) runs on the latest emergency_contacts through
the real gateway and worker, as do the list form and no static_contacts at all.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.cli import main as cli
from core.settings import Settings
from tests import harness
from tests.api_server import gateway
from tests.fakes.http_server import FakeHTTPServer
from tests.test_api_jobs import poll
from tests.test_emergency_contacts import route_upstream
from workflow_defs.schema import WorkflowDefinition
from workflow_defs.version_compat import (
    compatibility_warnings,
    contracts,
    directory_warnings,
    narrowings,
    read_definition,
)

DEFS = Path(__file__).resolve().parents[1] / "workflow_defs"
STEPS = [{"id": "say", "type": "llm", "config": {"model": "m", "prompt_text": "hi"}}]


def defn(version: str = "1.0.0", inputs: Any = (), schema: Any = None) -> WorkflowDefinition:
    data: dict[str, Any] = {"name": "w", "version": version, "inputs": list(inputs), "steps": STEPS}
    if schema is not None:
        data["input_schema"] = schema
    return WorkflowDefinition.model_validate(data)


def found(old: WorkflowDefinition, new: WorkflowDefinition) -> list[tuple[str, str]]:
    return [(n.input, n.message) for n in narrowings(old, new)]


# ---- the comparison ------------------------------------------------------------------------


def test_identical_and_widened_inputs_are_not_narrowings() -> None:
    old = defn(inputs=[{"name": "n", "type": "integer", "enum": [1, 2]}])
    assert found(old, old) == []
    widened = defn(
        "1.1.0",
        inputs=[{"name": "n", "type": "number", "enum": [1, 2, 3]}, {"name": "extra"}],
    )
    assert found(old, widened) == []
    # An input dropped from `inputs` is still accepted (undeclared names pass through).
    assert found(old, defn("1.2.0")) == []


@pytest.mark.parametrize(
    ("old_input", "new_input", "expected"),
    [
        ({"type": "array"}, {"type": "string"}, "type narrowed from array to string"),
        ({"type": "number"}, {"type": "integer"}, "type narrowed from number to integer"),
        ({"type": "any"}, {"type": "object"}, "type narrowed from any type to object"),
        ({}, {"type": "str"}, "type narrowed from any type to string"),  # an alias
    ],
)
def test_a_type_narrowed_is_reported(
    old_input: dict[str, Any], new_input: dict[str, Any], expected: str
) -> None:
    old = defn(inputs=[{"name": "x", **old_input}])
    new = defn("2.0.0", inputs=[{"name": "x", **new_input}])
    [(name, message)] = found(old, new)
    assert name == "x" and message.startswith(expected)


def test_types_from_inputs_and_input_schema_are_both_applied() -> None:
    # The shipped pair: `any` in inputs, string-or-array in input_schema.
    both = defn(
        inputs=[{"name": "c", "type": "any"}],
        schema={"properties": {"c": {"type": ["string", "array"]}}},
    )
    assert contracts(both).inputs["c"].types == frozenset({"string", "array"})
    only_array = defn(inputs=[{"name": "c", "type": "array"}])
    assert found(only_array, both) == []
    [(name, message)] = found(both, only_array)
    assert name == "c" and "(string no longer accepted)" in message
    # inputs says number, input_schema integer: only integers pass both.
    mixed = defn(
        inputs=[{"name": "k", "type": "number"}],
        schema={"properties": {"k": {"type": "integer"}}},
    )
    assert contracts(mixed).inputs["k"].types == frozenset({"integer"})


def test_a_new_required_input_or_an_optional_one_made_required_is_reported() -> None:
    old = defn(inputs=[{"name": "a", "type": "string"}])
    new = defn(
        "1.1.0",
        inputs=[
            {"name": "a", "type": "string", "required": True},
            {"name": "b", "type": "string", "required": True},
            {"name": "c", "type": "string", "required": True, "default": "x"},  # never fails
        ],
        schema={"required": ["d"]},
    )
    assert found(old, new) == [
        ("a", "now required (it was optional)"),
        ("b", "new required input (version 1.0.0 had none)"),
        ("d", "new required input (version 1.0.0 had none)"),
    ]
    problems = compatibility_warnings([("old.json", old), ("new.json", new)])
    assert [p.path for p in problems] == [
        "$.inputs[0]",
        "$.inputs[1]",
        "$.input_schema.required",
    ]


def test_enum_narrowed_or_added_is_reported_and_widened_is_not() -> None:
    old = defn(inputs=[{"name": "tier", "type": "string", "enum": ["free", "basic", "pro"]}])
    narrowed = defn("1.1.0", inputs=[{"name": "tier", "type": "string", "enum": ["free", "pro"]}])
    assert found(old, narrowed) == [("tier", "enum narrowed: ['basic'] no longer accepted")]
    free_text = defn(inputs=[{"name": "tier", "type": "string"}])
    assert found(free_text, old) == [
        ("tier", "values now limited to ['free', 'basic', 'pro'] (any value was accepted)")
    ]
    const = defn(
        "1.2.0", inputs=[{"name": "tier"}], schema={"properties": {"tier": {"const": "pro"}}}
    )
    assert found(old, const) == [("tier", "enum narrowed: ['free', 'basic'] no longer accepted")]
    assert found(narrowed, old) == []


def test_bounds_tightened_are_reported() -> None:
    old = defn(schema={"properties": {"n": {"minimum": 0, "maximum": 50}, "s": {"maxLength": 9}}})
    same_range = defn(
        "1.1.0",
        schema={"properties": {"n": {"exclusiveMinimum": -1, "maximum": 50}, "s": {}}},
    )
    assert found(old, same_range) == []
    tighter = defn(
        "1.2.0",
        schema={
            "properties": {
                "n": {"exclusiveMinimum": 0, "exclusiveMaximum": 50},
                "s": {"maxLength": 5, "minLength": 1},
            }
        },
    )
    assert found(old, tighter) == [
        ("n", "lower bound raised from >= 0 to > 0"),
        ("n", "upper bound lowered from <= 50 to < 50"),
        ("s", "minLength 1 added"),
        ("s", "maxLength changed from 9 to 5"),
    ]


def test_closing_the_input_object_is_reported() -> None:
    old = defn(inputs=[{"name": "a"}, {"name": "b"}])
    closed = defn("1.1.0", inputs=[{"name": "a"}], schema={"additionalProperties": False})
    [(name, message)] = found(old, closed)
    assert name == "" and "additionalProperties: false" in message
    closed_too = defn("1.2.0", inputs=[{"name": "a"}, {"name": "b"}], schema=closed.input_schema)
    assert found(closed_too, closed) == [
        ("b", "no longer declared, and undeclared names are refused")
    ]


def test_every_version_is_compared_with_every_older_one_in_version_order() -> None:
    v1_9 = defn("1.9.0", inputs=[{"name": "a", "type": "any"}])
    v1_10 = defn("1.10.0", inputs=[{"name": "a", "type": "string"}])
    v2 = defn("2.0.0", inputs=[{"name": "a", "type": "string"}])
    problems = compatibility_warnings([("v2.json", v2), ("v1_10.json", v1_10), ("v1_9.json", v1_9)])
    # 1.10.0 is newer than 1.9.0 (not older, as text would sort it); 2.0.0 narrows 1.9.0 too.
    assert [(p.source, p.path) for p in problems] == [
        ("v1_10.json", "$.inputs[0]"),
        ("v2.json", "$.inputs[0]"),
    ]
    assert problems[0].message.startswith(
        "input 'a' is narrower than in w 1.9.0 (v1_9.json): type narrowed from any type to string"
    )
    assert "Versioning a workflow" in problems[0].message


# ---- the shipped definitions ---------------------------------------------------------------

# What emergency_contacts 3.0.0 accepted before static_contacts took text again: the list only.
LIST_ONLY_STATIC_CONTACTS = {"name": "static_contacts", "type": "array", "default": []}


@pytest.mark.parametrize("file", ["emergency_contacts.json", "emergency_contacts_parallel.json"])
def test_shipped_emergency_contacts_accept_text_and_list(file: str) -> None:
    shipped = read_definition(DEFS / file)
    assert shipped is not None
    assert contracts(shipped).inputs["static_contacts"].types == frozenset({"string", "array"})
    # Nothing the list-only 3.0.0 accepted is refused now.
    data = json.loads((DEFS / file).read_text())
    older = copy.deepcopy(data)
    older["version"] = "0.1.0"
    older["inputs"] = [
        LIST_ONLY_STATIC_CONTACTS if i["name"] == "static_contacts" else i for i in data["inputs"]
    ]
    del older["input_schema"]["properties"]["static_contacts"]
    assert found(WorkflowDefinition.model_validate(older), shipped) == []


def test_the_shipped_directory_has_no_narrowing() -> None:
    files = [p for p in DEFS.glob("*.json") if read_definition(p) is not None]
    checked = {p: d for p in files if (d := read_definition(p)) is not None}
    assert len(checked) >= 8
    assert directory_warnings(checked) == {}


def test_llmflow_validate_warns_about_a_narrowed_input_and_still_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = {"name": "w", "version": "1.0.0", "steps": STEPS}
    old["inputs"] = [{"name": "contacts", "type": "string", "default": ""}]
    new = {**old, "version": "1.1.0", "inputs": [{"name": "contacts", "type": "array"}]}
    (tmp_path / "w.json").write_text(json.dumps(old), encoding="utf-8")
    (tmp_path / "w_1_1.json").write_text(json.dumps(new), encoding="utf-8")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")  # ignored by the comparison

    assert cli.main(["validate", str(tmp_path / "w_1_1.json")]) == 0
    out = capsys.readouterr().out
    assert f"✓ {tmp_path / 'w_1_1.json'}  (w 1.1.0, 1 steps)" in out
    assert (
        "    warning $.inputs[0]: input 'contacts' is narrower than in w 1.0.0 (w.json): type "
        "narrowed from string to array (string no longer accepted)"
    ) in out
    # The older file alone: nothing newer is being checked, so nothing to say about it.
    assert cli.main(["validate", str(tmp_path / "w.json")]) == 0
    assert "warning" not in capsys.readouterr().out


# ---- the earlier service's requests, end to end ----------------------------------------------

# The check request that ends the earlier service's deployment guide, byte for byte.
EARLIER_CHECK_REQUEST = (
    '{"workflow_name": "emergency_contacts", "input_data": {"city": "San Francisco", '
    '"state": "CA", "lat": 37.7749, "lng": -122.4194, "scenarios": ["earthquake"], '
    '"family_size": 4, "duration": "72_hours", "user_tier": "BASIC", "static_contacts": ""}}'
)


def with_static_contacts(value: Any, *, version: str | None = None) -> dict[str, Any]:
    body = json.loads(EARLIER_CHECK_REQUEST)
    if value is None:
        del body["input_data"]["static_contacts"]
    else:
        body["input_data"]["static_contacts"] = value
    if version:
        body["workflow_version"] = version
    return body


def step_output(job: dict[str, Any], step_id: str) -> Any:
    return next(s for s in job["metadata"]["steps"] if s["id"] == step_id)["output"]


async def test_the_earlier_services_requests_complete_on_the_latest_version(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    route_upstream(upstream)  # WeatherAPI and Places; the LLM step runs on the mock provider
    mocked = settings.model_copy(update={"llm_default_provider": "mock"})
    contacts_text = "Mom: +1 415-555-0100\nDr. Lee (pediatrician): +1 415-555-0199"
    async with harness.running_worker(temporal_client, mocked, engine):
        async with gateway(mocked, engine=engine, temporal_client=temporal_client) as api:
            requests: list[httpx.Response] = [
                await api.post(
                    "/api/v1/jobs",
                    content=EARLIER_CHECK_REQUEST,
                    headers={"Content-Type": "application/json"},
                ),
                await api.post("/api/v1/jobs", json=with_static_contacts(contacts_text)),
                await api.post(
                    "/api/v1/jobs",
                    json=with_static_contacts(
                        ["Mom: +1 415-555-0100", {"name": "Dr. Lee", "phone": "+1 415-555-0199"}]
                    ),
                ),
                await api.post("/api/v1/jobs", json=with_static_contacts(None)),
                await api.post(
                    "/api/v1/jobs", json=with_static_contacts(contacts_text, version="3.0.0")
                ),
                await api.post("/api/v1/jobs", json=with_static_contacts([], version="3.0.0")),
            ]
            for resp in requests:
                assert resp.status_code == 202, resp.text
            jobs = await asyncio.gather(*(poll(api, r.json()["job_id"], 60) for r in requests))
            wrong = await api.post("/api/v1/jobs", json=with_static_contacts(5))

    assert [r.json()["workflow_version"] for r in requests] == ["3.1.0"] * 4 + ["3.0.0"] * 2
    for job in jobs:
        assert job["status"] == "completed", job
        assert set(job["output"]) == {"contacts", "meeting_locations"}
    # What the prompt's "Contacts they already keep" section reads: text as given, a list one
    # item a line, and "none" for "", [] or nothing.
    assert [step_output(job, "static_contacts_text") for job in jobs] == [
        "none",
        contacts_text,
        'Mom: +1 415-555-0100\n{"name": "Dr. Lee", "phone": "+1 415-555-0199"}',
        "none",
        contacts_text,
        "none",
    ]
    assert jobs[0]["metadata"]["steps"][-1]["id"] == "parse_contacts"
    assert wrong.status_code == 422
    assert ["body", "input_data", "static_contacts"] in [d["loc"] for d in wrong.json()["detail"]]
