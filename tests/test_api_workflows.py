"""GET/POST /api/v1/workflows through the real gateway: list, detail with input schema,
validate with JSON paths, and the Mermaid graph."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from temporalio.client import Client

from api.main import create_app
from api.workflow_graph import escape_label, mermaid_flowchart
from core.settings import Settings
from tests.api_server import serve
from workflow_defs.catalog import load_catalog
from workflow_defs.schema import WorkflowDefinition


def build_app(
    settings: Settings, *, engine: Engine | None = None, temporal_client: Client | None = None
) -> FastAPI:
    return create_app(settings, engine=engine, temporal_client=temporal_client)


@contextlib.asynccontextmanager
async def api_for(
    settings: Settings, engine: Engine, temporal_client: Client
) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(build_app(settings, engine=engine, temporal_client=temporal_client)) as api:
        yield api


def llm_step(step_id: str, **config: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "llm", "config": {"model": "m", **config}}


async def test_list_names_every_shipped_workflow_with_versions_and_inputs(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    async with api_for(settings, engine, temporal_client) as api:
        resp = await api.get("/api/v1/workflows")
    assert resp.status_code == 200, resp.text
    by_name = {w["name"]: w for w in resp.json()}
    assert {"quickstart", "ticket_triage", "emergency_contacts"} <= set(by_name)
    quick = by_name["quickstart"]
    assert quick["latest_version"] == "1.0.0" and quick["versions"] == ["1.0.0"]
    assert quick["steps"] == 3
    assert [i["name"] for i in quick["inputs"]] == ["topic", "audience"]
    assert quick["inputs"][0]["required"] is True and quick["inputs"][0]["type"] == "string"
    assert by_name["emergency_contacts"]["latest_version"] == "3.1.0"
    assert by_name["ticket_triage"]["description"].startswith("Classify a support message")


async def test_detail_has_input_schema_steps_and_content_hash(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    async with api_for(settings, engine, temporal_client) as api:
        quick = await api.get("/api/v1/workflows/quickstart")
        pinned = await api.get("/api/v1/workflows/quickstart", params={"version": "1.0.0"})
        triage = await api.get("/api/v1/workflows/ticket_triage")
    assert quick.status_code == 200, quick.text
    body = quick.json()
    assert pinned.json() == body
    assert body["version"] == "1.0.0" and body["versions"] == ["1.0.0"]
    assert body["input_schema"] == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "topic": {"type": "string", "description": "What to explain"},
            "audience": {
                "type": "string",
                "description": "Who the explanation is for",
                "default": "a busy software engineer",
            },
        },
        "required": ["topic"],
    }
    assert [(s["id"], s["type"]) for s in body["steps"]] == [
        ("explain", "llm"),
        ("bullet_text", "transform"),
        ("summary", "transform"),
    ]
    assert body["steps"][0]["display_name"] == "Explain the topic"
    assert body["output"]["summary"] == "${steps.summary.output}"
    assert body["timeout_seconds"] == 300 and body["warnings"] == []
    shipped = load_catalog(settings).definitions.get("quickstart")
    assert shipped is not None
    assert body["content_hash"] == shipped.snapshot().content_hash

    steps = {s["id"]: s for s in triage.json()["steps"]}
    assert steps["customer_profile"]["when"] == "input.crm_url != null"
    assert steps["customer_profile"]["error_mode"] == "continue"
    assert steps["classify"]["error_mode"] == "fail" and steps["classify"]["when"] is None


async def test_emergency_contacts_schema_merges_inputs_with_its_own_input_schema(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    async with api_for(settings, engine, temporal_client) as api:
        resp = await api.get("/api/v1/workflows/emergency_contacts")
    schema = resp.json()["input_schema"]
    props = schema["properties"]
    assert schema["required"] == ["lat", "lng"]
    # From `inputs` (type, description) and from `input_schema` (bounds), in one property.
    assert props["lat"] == {
        "type": "number",
        "description": "Latitude",
        "minimum": -90,
        "maximum": 90,
    }
    assert props["family_size"] == {"type": "integer", "default": 1, "minimum": 1, "maximum": 50}
    assert props["scenarios"] == {
        "type": "array",
        "default": ["earthquake", "flood", "power outage"],
    }
    assert len(props) == 10


async def test_unknown_workflow_or_version_is_404_naming_it(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    async with api_for(settings, engine, temporal_client) as api:
        unknown = await api.get("/api/v1/workflows/nope")
        bad_version = await api.get("/api/v1/workflows/quickstart", params={"version": "9.9.9"})
        graph = await api.get("/api/v1/workflows/nope/graph")
        submit = await api.post(
            "/api/v1/jobs",
            json={"workflow_name": "quickstart", "workflow_version": "9.9.9", "input_data": {}},
        )
        submit_unknown = await api.post("/api/v1/jobs", json={"workflow_name": "nope"})
    assert unknown.status_code == 404 and "'nope'" in unknown.json()["detail"]
    assert "workflows: " in unknown.json()["detail"] and "quickstart" in unknown.json()["detail"]
    assert bad_version.status_code == 404
    said = "workflow 'quickstart' has no version 9.9.9; versions: 1.0.0"
    assert bad_version.json()["detail"] == said
    # Submitting says it in the same words.
    assert submit.status_code == 404 and said in submit.text
    assert submit_unknown.status_code == 404 and unknown.json()["detail"] in submit_unknown.text
    assert graph.status_code == 404 and "'nope'" in graph.json()["detail"]


async def test_validate_accepts_a_shipped_definition(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    import json

    shipped = json.loads((settings.workflow_defs_dir / "emergency_contacts.json").read_text())
    async with api_for(settings, engine, temporal_client) as api:
        resp = await api.post("/api/v1/workflows/validate", json=shipped)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "valid": True,
        "errors": [],
        "warnings": [],
        "name": "emergency_contacts",
        "version": "3.0.0",
    }


async def test_validate_reports_each_error_with_its_json_path(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    unknown_type = {
        "name": "a",
        "steps": [llm_step("x", prompt_text="hi"), {"id": "p", "type": "parallelize"}],
    }
    outside = {
        "name": "b",
        "version": "2.0.0",
        "steps": [
            llm_step("ok", prompt_text="hello"),
            llm_step("leak", prompt_template="../../etc/passwd"),
        ],
    }
    bad_ref = {
        "name": "c",
        "steps": [
            llm_step("first", prompt_text="${steps.second.content}"),
            llm_step("second", prompt_text="x"),
            {
                "id": "api",
                "type": "external_api",
                "config": {"service": "weatherapi", "operation": "nope"},
            },
        ],
        "output": "${steps.ghost.output}",
    }
    warned = {"name": "d", "colour": "blue", "steps": [llm_step("x", prompt_text="hi")]}
    async with api_for(settings, engine, temporal_client) as api:
        results = [
            await api.post("/api/v1/workflows/validate", json=body)
            for body in (unknown_type, outside, bad_ref, warned, [1, 2], "just text")
        ]
    assert [r.status_code for r in results] == [200] * 6
    r_type, r_outside, r_ref, r_warned, r_list, r_text = (r.json() for r in results)

    assert r_type["valid"] is False and r_type["name"] == "a" and r_type["version"] is None
    assert [e["path"] for e in r_type["errors"]] == ["$.steps[1].type"]
    assert "unknown step type 'parallelize'" in r_type["errors"][0]["message"]

    assert r_outside["valid"] is False and r_outside["version"] == "2.0.0"
    assert r_outside["errors"] == [
        {
            "path": "$.steps[1].config.prompt_template",
            "message": "prompt path '../../etc/passwd' points outside PROMPTS_DIR",
        }
    ]

    paths = {e["path"]: e["message"] for e in r_ref["errors"]}
    assert set(paths) == {"$.steps[0].config.prompt_text", "$.steps[2].config", "$.output"}
    assert "'second' runs later" in paths["$.steps[0].config.prompt_text"]
    assert "weatherapi.nope" in paths["$.steps[2].config"]
    assert "'ghost' does not exist" in paths["$.output"]

    assert r_warned["valid"] is True and r_warned["errors"] == []
    assert [w["path"] for w in r_warned["warnings"]] == ["$.colour"]

    for not_an_object in (r_list, r_text):
        assert not_an_object["valid"] is False
        assert not_an_object["errors"] == [
            {"path": "$", "message": "a definition must be a JSON object"}
        ]


async def test_validate_rejects_malformed_json_with_400(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    async with api_for(settings, engine, temporal_client) as api:
        resp = await api.post(
            "/api/v1/workflows/validate",
            content=b'{"name": "x", "steps": [',
            headers={"Content-Type": "application/json"},
        )
    assert resp.status_code == 400


async def test_graph_of_ticket_triage_shows_conditions_and_skips(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    async with api_for(settings, engine, temporal_client) as api:
        text = await api.get("/api/v1/workflows/ticket_triage/graph", params={"version": "1.0.0"})
        as_json = await api.get(
            "/api/v1/workflows/ticket_triage/graph", params={"format": "json", "version": "1.0.0"}
        )
        bad_format = await api.get("/api/v1/workflows/ticket_triage/graph", params={"format": "x"})
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    source = text.text
    assert as_json.json() == {"mermaid": source}
    assert bad_format.status_code == 422
    assert_mermaid_shape(source)
    for step_id in ("classify", "customer_profile", "draft_reply"):
        assert f'"{step_id} (' in source
    assert '    s0(["classify (llm)"])' in source  # llm: stadium
    assert '    s1[/"customer_profile (http)<br/>' in source  # http: parallelogram
    assert 's0 -.->|"when: input.crm_url != null"| s1' in source
    assert (
        "s1 -.->|\"when: steps.classify.data.urgency != 'low' or input.plan == 'enterprise'\"| s2"
        in source
    )
    # Skipping customer_profile reaches draft_reply (still behind its condition) or the end.
    assert 's0 -.->|"skip customer_profile; when: steps.classify' in source
    assert 's1 -.->|"skip draft_reply"| wf_end' in source
    assert 's0 -.->|"skip customer_profile, draft_reply"| wf_end' in source
    assert "on error: continue" in source and "class s1 tolerant" in source


NODE = re.compile(
    r'^    (wf_start|wf_end|s\d+)(\(\(|\(\[|\[\[|\[/|\[\\|\[)"[^"]*"(\)\)|\]\)|\]\]|/\]|\\\]|\])$'
)
EDGE = re.compile(r'^    (wf_start|s\d+) (-->|-\.->\|"[^"|]*"\|) (wf_end|s\d+)$')


def assert_mermaid_shape(source: str) -> None:
    """Every line is a header, comment, node, edge or class line; labels hold no raw quotes."""
    lines = source.rstrip("\n").split("\n")
    assert lines[0] == "flowchart TD"
    for line in lines[1:]:
        assert (
            line.startswith("    %% ")
            or NODE.match(line)
            or EDGE.match(line)
            or line == "    classDef tolerant stroke-dasharray: 5 5"
            or re.match(r"^    class s\d+(,s\d+)* tolerant$", line)
        ), f"unexpected Mermaid line: {line!r}"


def test_graph_escapes_labels_and_keeps_node_ids_safe() -> None:
    defn = WorkflowDefinition.model_validate(
        {
            "name": "tricky",
            "steps": [
                {
                    "id": "end",
                    "type": "transform",
                    "display_name": 'Say "hi" & <b>bye</b> | #quot; `x` \\n\nnext',
                    "config": {"operation": "join", "input": []},
                },
                {
                    "id": "a-b",
                    "type": "webhook",
                    "when": 'input.x == "q|r"',
                    "error_mode": "retry",
                    "config": {"url": "http://example.test"},
                },
                {
                    "id": "api",
                    "type": "external_api",
                    "config": {"service": "s", "operation": "o"},
                },
            ],
        }
    )
    source = mermaid_flowchart(defn)
    assert_mermaid_shape(source)
    assert (
        '    s0["end (transform)<br/>Say #quot;hi#quot; #38; #60;b#62;bye#60;/b#62; #124; '
        '#35;quot; #96;x#96; #92;n next"]'
    ) in source
    assert '    s1[\\"a-b (webhook)<br/>on error: retry"\\]' in source
    assert '    s2[["api (external_api)"]]' in source
    assert 's0 -.->|"when: input.x == #quot;q#124;r#quot;"| s1' in source
    assert "    s0 --> s1" not in source  # the conditional edge replaces the plain one
    assert escape_label("a\tb\x00c") == "a bc"


def test_long_conditions_are_shortened_in_edge_labels() -> None:
    long_when = "input.a == 1 and " + " and ".join(f"input.x{i} == {i}" for i in range(20))
    defn = WorkflowDefinition.model_validate(
        {"name": "long", "steps": [llm_step("a", prompt_text="x") | {"when": long_when}]}
    )
    edge = next(line for line in mermaid_flowchart(defn).split("\n") if "wf_start -.->" in line)
    label = edge.split('"')[1]
    assert label.startswith("when: input.a == 1 and") and label.endswith("…")
    assert len(label) == len("when: ") + 80


async def test_openapi_documents_the_workflow_routes_with_examples(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    async with api_for(settings, engine, temporal_client) as api:
        spec = (await api.get("/openapi.json")).json()
        validate = spec["paths"]["/api/v1/workflows/validate"]["post"]
        examples = validate["requestBody"]["content"]["application/json"]["examples"]
        # The documented examples say what they claim.
        good = await api.post("/api/v1/workflows/validate", json=examples["valid"]["value"])
        bad = await api.post("/api/v1/workflows/validate", json=examples["invalid"]["value"])
    paths = spec["paths"]
    assert set(examples) == {"valid", "invalid"}
    assert good.json()["valid"] is True, good.text
    assert {e["path"] for e in bad.json()["errors"]} == {
        "$.steps[0].config.variables",
        "$.steps[0].config.prompt_template",
    }
    assert "not an object" in validate["description"]
    detail = paths["/api/v1/workflows/{name}"]["get"]
    assert "404" in detail["responses"]
    assert detail["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/WorkflowDetail"
    }
    graph = paths["/api/v1/workflows/{name}/graph"]["get"]["responses"]["200"]["content"]
    assert graph["text/plain"]["example"].startswith("flowchart TD")
    assert "mermaid" in graph["application/json"]["schema"]["properties"]
    schemas = spec["components"]["schemas"]
    for model in ("WorkflowSummary", "WorkflowDetail", "ValidationResult"):
        assert schemas[model].get("examples"), model


async def test_workflow_routes_need_the_api_key_when_configured(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    keyed = settings.model_copy(update={"api_keys": ["wf-key-123456"]})
    async with api_for(keyed, engine, temporal_client) as api:
        bare = await api.get("/api/v1/workflows")
        graph = await api.get("/api/v1/workflows/quickstart/graph")
        check = await api.post("/api/v1/workflows/validate", json={})
        keyed_list = await api.get(
            "/api/v1/workflows", headers={"Authorization": "Bearer wf-key-123456"}
        )
    assert [bare.status_code, graph.status_code, check.status_code] == [401, 401, 401]
    assert keyed_list.status_code == 200
