"""POST /jobs/{id}/fork, GET /jobs/{id}/forks and GET /jobs/{id}/compare/{other} on the real
dev server, the LLM provider faked at the wire level: it counts the calls that reach it, so a
reused step is one that provably made no call."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.settings import Settings
from tests import harness
from tests.api_server import gateway
from tests.fakes.http_server import FakeHTTPServer
from tests.test_api_jobs import poll
from tests.test_cli_run import llmflow
from tests.test_control_flow import CHAT, REPO_DEFS, FakeLLM, llm
from tests.test_key_ownership import ALICE, BOB, OPS, keyed

PROMPT_A2 = "echo: A2-${steps.a.content}"


def forkflow(version: str = "1.0.0", prompt_a2: str = PROMPT_A2) -> dict[str, Any]:
    """Two independent chains (a → a2, b → b2) joined at the end, and a foreach."""
    return {
        "name": "forkflow",
        "version": version,
        "inputs": [
            {"name": "a", "type": "integer", "required": True},
            {"name": "b", "type": "integer", "required": True},
            {"name": "items", "type": "array", "default": []},
        ],
        "steps": [
            llm("a", "echo: A-${input.a}"),
            llm("b", "echo: B-${input.b}"),
            llm("a2", prompt_a2),
            llm("b2", "echo: B2-${steps.b.content}"),
            {
                "id": "join",
                "type": "transform",
                "config": {
                    "operation": "template",
                    "config": {
                        "template": "${x}|${y}",
                        "variables": {"x": "${steps.a2.content}", "y": "${steps.b2.content}"},
                    },
                },
            },
            {
                "id": "enrich",
                "type": "foreach",
                "config": {
                    "items": "${input.items}",
                    "max_concurrency": 1,
                    "steps": [llm("summarize", "echo: S-${item}")],
                    "output": "${steps.summarize.content}",
                },
            },
        ],
        "output": {"joined": "${steps.join.output}", "items": "${steps.enrich.output}"},
    }


@pytest.fixture
def defs(tmp_path: Path) -> Path:
    target = tmp_path / "defs"
    shutil.copytree(REPO_DEFS, target)
    (target / "forkflow.json").write_text(json.dumps(forkflow()))
    return target


@pytest.fixture
def answers(upstream: FakeHTTPServer) -> FakeLLM:
    fake = FakeLLM()
    upstream.route("POST", CHAT, fake)
    return fake


@asynccontextmanager
async def running(
    temporal_client: Client, settings: Settings, engine: Engine, defs: Path
) -> AsyncIterator[httpx.AsyncClient]:
    cfg = settings.model_copy(update={"workflow_defs_dir": defs})
    async with harness.running_worker(temporal_client, cfg, engine):
        async with gateway(cfg, engine=engine, temporal_client=temporal_client) as api:
            yield api


async def first_run(api: httpx.AsyncClient, **input_data: Any) -> dict[str, Any]:
    body = {"workflow_name": "forkflow", "workflow_version": "1.0.0", "input_data": input_data}
    resp = await api.post("/api/v1/jobs", json=body)
    assert resp.status_code == 202, resp.text
    done = await poll(api, resp.json()["job_id"])
    assert done["status"] == "completed", done
    return done


async def fork(
    api: httpx.AsyncClient, job_id: str, body: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the 202 answer, the finished fork)."""
    resp = await api.post(f"/api/v1/jobs/{job_id}/fork", json=body)
    assert resp.status_code == 202, resp.text
    return resp.json(), await poll(api, resp.json()["job_id"])


def actions(answer: dict[str, Any]) -> dict[str, str]:
    return {sid: s["action"] for sid, s in answer["fork"]["steps"].items()}


def llm_paths(job: dict[str, Any]) -> set[str]:
    """The llm steps that called the provider in this run (not reused)."""
    return {
        s["path"]
        for s in job["metadata"]["steps"]
        if s["type"] == "llm" and "output reused from an earlier run" not in s["warnings"]
    }


async def test_an_input_patch_reruns_only_the_chain_that_reads_it_and_compare_shows_it(
    temporal_client: Client, settings: Settings, engine: Engine, defs: Path, answers: FakeLLM
) -> None:
    async with running(temporal_client, settings, engine, defs) as api:
        parent = await first_run(api, a=1, b=1, items=["x"])
        calls = answers.calls
        accepted, child = await fork(
            api, parent["job_id"], {"input_patch": {"b": 2}, "reason": "b was wrong"}
        )
        patch_calls = answers.calls - calls
        calls = answers.calls
        overridden, child2 = await fork(
            api, parent["job_id"], {"output_overrides": {"a": {"content": "A-zzz"}}}
        )
        override_calls = answers.calls - calls
        read_back = (await api.get(f"/api/v1/jobs/{child['job_id']}")).json()
        forks = (await api.get(f"/api/v1/jobs/{parent['job_id']}/forks")).json()
        compared = (
            await api.get(f"/api/v1/jobs/{parent['job_id']}/compare/{child['job_id']}")
        ).json()
        no_forks = (await api.get(f"/api/v1/jobs/{child['job_id']}/forks")).json()
        unknown_compare = await api.get(f"/api/v1/jobs/{parent['job_id']}/compare/nope")

    assert parent["output"] == {"joined": "A2-A-1|B2-B-1", "items": ["S-x"]}
    # input_patch: b reads input.b, b2 reads b, join reads b2: only that chain runs again.
    assert actions(accepted) == {
        "a": "reused",
        "b": "rerun",
        "a2": "reused",
        "b2": "rerun",
        "join": "rerun",
        "enrich": "reused",
    }
    assert accepted["fork"]["steps"]["b"]["why"] == "reads ${input.b}, which input_patch changed"
    assert accepted["fork"]["steps"]["b2"]["why"] == "reads ${steps.b.content}; 'b' runs again"
    assert patch_calls == 2 and llm_paths(child) == {"b", "b2"}
    assert child["status"] == "completed"
    assert child["output"] == {"joined": "A2-A-1|B2-B-2", "items": ["S-x"]}
    assert read_back["fork"] == {**accepted["fork"], "parent": parent["job_id"]}
    assert read_back["fork"]["reason"] == "b was wrong" and read_back["fork"]["from_step"] is None

    # output_overrides: a is not run, a2 reads the new content, b's chain is untouched.
    assert actions(overridden) == {
        "a": "overridden",
        "b": "reused",
        "a2": "rerun",
        "b2": "reused",
        "join": "rerun",
        "enrich": "reused",
    }
    assert override_calls == 1 and llm_paths(child2) == {"a2"}
    assert child2["output"]["joined"] == "A2-A-zzz|B2-B-1"

    assert [f["job_id"] for f in forks["items"]] == [child["job_id"], child2["job_id"]]
    assert forks["items"][0]["fork"]["steps"]["b"]["action"] == "rerun"
    assert no_forks == {"items": []}
    assert unknown_compare.status_code == 404

    steps = {s["path"]: s for s in compared["steps"]}
    assert compared["output_changed"] is True
    assert steps["a"]["output_changed"] is False and steps["a"]["other"]["reused"] is True
    assert steps["b"]["output_changed"] is True and steps["b"]["other"]["reused"] is False
    assert steps["b"]["job"]["tokens"] == steps["b"]["other"]["tokens"] == 15
    assert steps["a"]["other"]["status"] == "completed"
    # The fork's item ran in the parent only: the reused foreach has no inner record.
    assert steps["enrich[0].summarize"]["other"] is None
    assert compared["job"]["tokens"] == 5 * 15 and compared["other"]["tokens"] == 2 * 15


async def test_a_step_override_and_the_latest_definition_rerun_the_changed_step(
    temporal_client: Client, settings: Settings, engine: Engine, defs: Path, answers: FakeLLM
) -> None:
    (defs / "forkflow_v1_1.json").write_text(
        json.dumps(forkflow("1.1.0", prompt_a2="echo: A2new-${steps.a.content}"))
    )
    async with running(temporal_client, settings, engine, defs) as api:
        parent = await first_run(api, a=1, b=1)
        calls = answers.calls
        overridden, by_override = await fork(
            api,
            parent["job_id"],
            {"step_overrides": {"b2": {"config": {"prompt_text": "echo: B2x-${steps.b.content}"}}}},
        )
        override_calls = answers.calls - calls
        calls = answers.calls
        latest, on_latest = await fork(api, parent["job_id"], {"definition": "latest"})
        latest_calls = answers.calls - calls
        pinned, _ = await fork(api, parent["job_id"], {"definition": {"version": "1.0.0"}})

    assert actions(overridden) == {
        "a": "reused",
        "b": "reused",
        "a2": "reused",
        "b2": "rerun",
        "join": "rerun",
        "enrich": "reused",
    }
    assert overridden["fork"]["steps"]["b2"]["why"].startswith("step_overrides changed it")
    assert override_calls == 1 and by_override["output"]["joined"] == "A2-A-1|B2x-B-1"

    assert latest["workflow_version"] == "1.1.0"
    assert latest["fork"]["definition_version"] == "1.1.0"
    assert actions(latest)["a2"] == "rerun" and actions(latest)["b2"] == "reused"
    assert latest["fork"]["steps"]["a2"]["why"].startswith("the definition changed it")
    assert latest_calls == 1 and on_latest["output"]["joined"] == "A2new-A-1|B2-B-1"
    # The same version as the parent's: nothing changed, nothing runs but the transform.
    assert pinned["workflow_version"] == "1.0.0"
    assert set(actions(pinned).values()) == {"reused"}


async def test_a_fork_from_a_foreach_item_reruns_only_the_items_from_there(
    temporal_client: Client, settings: Settings, engine: Engine, defs: Path, answers: FakeLLM
) -> None:
    async with running(temporal_client, settings, engine, defs) as api:
        parent = await first_run(api, a=1, b=1, items=["x", "y", "z"])
        calls = answers.calls
        accepted, child = await fork(api, parent["job_id"], {"from_step": "enrich[1].summarize"})
        item_calls = answers.calls - calls

    assert accepted["fork"]["from_step"] == "enrich[1].summarize"
    assert accepted["fork"]["steps"]["enrich"] == {
        "action": "rerun",
        "why": "items from 1 run again; item 0 reused",
    }
    assert {sid for sid, a in actions(accepted).items() if a == "reused"} == {
        "a",
        "b",
        "a2",
        "b2",
        "join",
    }
    assert item_calls == 2
    assert llm_paths(child) == {"enrich[1].summarize", "enrich[2].summarize"}
    assert child["output"] == parent["output"]


async def test_bad_forks_are_refused_naming_the_field(
    temporal_client: Client, settings: Settings, engine: Engine, defs: Path, answers: FakeLLM
) -> None:
    async with running(temporal_client, settings, engine, defs) as api:
        parent = await first_run(api, a=1, b=1, items=["x"])
        job = parent["job_id"]
        bad = [
            (("from_step",), {"from_step": "nope"}),
            (("from_step",), {"from_step": "a2[1]"}),
            (("from_step",), {"from_step": "enrich[0].nope"}),
            (("input_patch", "a"), {"input_patch": {"a": "one"}}),
            (("output_overrides", "nope"), {"output_overrides": {"nope": 1}}),
            (("output_overrides", "summarize"), {"output_overrides": {"summarize": 1}}),
            (("step_overrides", "nope"), {"step_overrides": {"nope": {"config": {}}}}),
            (("step_overrides", "b"), {"step_overrides": {"b": {"config": {"max_tokens": "x"}}}}),
            (("definition", "version"), {"definition": {"version": "9.9.9"}}),
            (
                ("output_overrides", "a", "content"),
                {"output_overrides": {"a": {"content": "\u0000"}}},
            ),
        ]
        refused = [
            (loc, await api.post(f"/api/v1/jobs/{job}/fork", json=body)) for loc, body in bad
        ]
        missing = await api.post("/api/v1/jobs/nope/fork", json={})
        listing_missing = await api.get("/api/v1/jobs/nope/forks")
        forks = (await api.get(f"/api/v1/jobs/{job}/forks")).json()
    for loc, resp in refused:
        assert resp.status_code == 422, (loc, resp.text)
        assert resp.json()["detail"][0]["loc"] == ["body", *loc], resp.text
    messages = [resp.json()["detail"][0]["msg"] for _, resp in refused]
    assert "it is inside 'enrich'" in messages[5]  # an inner step can't be given an output
    assert "max_tokens" in messages[7]
    assert missing.status_code == 404 and listing_missing.status_code == 404
    assert forks == {"items": []}  # nothing refused left a job behind


async def test_a_fork_of_a_running_job_is_409(
    temporal_client: Client, settings: Settings, engine: Engine, defs: Path
) -> None:
    cfg = settings.model_copy(update={"workflow_defs_dir": defs})
    async with gateway(cfg, engine=engine, temporal_client=temporal_client) as api:
        body = {"workflow_name": "forkflow", "input_data": {"a": 1, "b": 1}}
        job_id = (await api.post("/api/v1/jobs", json=body)).json()["job_id"]  # no worker
        resp = await api.post(f"/api/v1/jobs/{job_id}/fork", json={"input_patch": {"a": 2}})
        await api.post(f"/api/v1/jobs/{job_id}/cancel")
    assert resp.status_code == 409 and "still queued" in resp.text


async def test_llmflow_jobs_fork_prints_the_new_job_and_its_plan(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    plain = settings.model_copy(update={"redis_url": None, "llm_default_provider": "mock"})
    async with harness.running_worker(temporal_client, plain, engine):
        code, out, err = await llmflow(
            plain, "run", "quickstart", "--input", '{"topic": "tables"}', "--wait", "--json"
        )
        assert code == 0, err
        parent = json.loads(out)["job_id"]
        forked = await llmflow(
            plain,
            "jobs",
            "fork",
            parent,
            "--input-patch",
            '{"audience": "a child"}',
            "--output-override",
            'bullet_text="one point"',
            "--reason",
            "simpler words",
        )
        refused = await llmflow(plain, "jobs", "fork", parent, "--output-override", "nope=1")
        child_id = forked[1].strip()
        async with gateway(plain, engine=engine, temporal_client=temporal_client) as api:
            child = await poll(api, child_id)
    assert forked[0] == 0, forked[2]
    assert "explain: rerun (reads ${input.audience}, which input_patch changed)" in forked[2]
    assert "bullet_text: overridden" in forked[2] and "summary: rerun" in forked[2]
    assert child["status"] == "completed" and child["output"]["summary"].endswith("• one point")
    assert child["fork"]["parent"] == parent and child["fork"]["reason"] == "simpler words"
    assert refused[0] == 2 and "output_overrides.nope: no top-level step 'nope'" in refused[2]


# The fork docs/dsl.md and the README show, on the shipped emergency_contacts with no keys (the
# services answer with samples, the mock provider stands in for the model).
CONTACTS_RUN = {
    "workflow_name": "emergency_contacts",
    "workflow_version": "3.0.0",
    "input_data": {
        "city": "Oakland",
        "state": "CA",
        "lat": 37.8,
        "lng": -122.27,
        "family_size": 3,
        "static_contacts": ["Neighbour Ana: 555-0101"],
    },
}
CONTACTS_FORK = {
    "from_step": "generate_contacts",
    "input_patch": {"family_size": 6},
    "definition": "original",
    "step_overrides": {
        "generate_contacts": {"config": {"model": "anthropic/claude-3-5-haiku", "temperature": 0}}
    },
    "output_overrides": {"fetch_weather": {"data": {"current": {"temp_c": 30}}}},
    "reason": "try a cheaper model",
}


def no_keys(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "environment": "development",
            "weatherapi_api_key": None,
            "google_services_api_key": None,
            "openrouter_api_key": None,
            "llm_default_provider": "mock",
        }
    )


async def test_the_documented_emergency_contacts_fork(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    offline = no_keys(settings)
    async with harness.running_worker(temporal_client, offline, engine):
        async with gateway(offline, engine=engine, temporal_client=temporal_client) as api:
            parent_id = (await api.post("/api/v1/jobs", json=CONTACTS_RUN)).json()["job_id"]
            parent = await poll(api, parent_id)
            answer = await api.post(f"/api/v1/jobs/{parent_id}/fork", json=CONTACTS_FORK)
            child = await poll(api, answer.json()["job_id"])
            compared = (await api.get(f"/api/v1/jobs/{parent_id}/compare/{child['job_id']}")).json()
    assert parent["status"] == "completed" and answer.status_code == 202, answer.text
    assert {sid: s["action"] for sid, s in answer.json()["fork"]["steps"].items()} == {
        "fetch_weather": "overridden",
        "fetch_hospitals": "reused",
        "fetch_police": "reused",
        "fetch_fire_stations": "reused",
        "format_places_data": "reused",
        "list_static_contacts": "reused",
        "static_contacts_text": "reused",
        "generate_contacts": "rerun",
        "parse_contacts": "rerun",
    }
    assert child["status"] == "completed"
    steps = {s["id"]: s for s in child["metadata"]["steps"]}
    assert "for 6 people" in steps["generate_contacts"]["output"]["content"]
    assert steps["generate_contacts"]["output"]["model"] == "anthropic/claude-3-5-haiku"
    assert child["output"]["contacts"] == parent["output"]["contacts"]
    changed = {s["path"] for s in compared["steps"] if s["output_changed"]}
    assert changed == {"fetch_weather", "generate_contacts", "parse_contacts"}
    why = answer.json()["fork"]["steps"]["generate_contacts"]["why"]
    assert why.startswith("from_step; step_overrides changed it (config hash "), why
    assert why.endswith(
        "; reads ${input.family_size}, which input_patch changed"
        "; reads ${steps.fetch_weather.data}, which output_overrides changed"
    ), why


async def test_a_fork_after_a_parallel_whose_branch_steps_it_reads_runs_the_parallel_again(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    """3.1.0 fetches in one `parallel` (gather); format_places_data reads its branch steps by
    id, which a reused parallel would not give back: the plan runs gather again."""
    offline = no_keys(settings)
    run = {**CONTACTS_RUN, "workflow_version": "3.1.0"}
    async with harness.running_worker(temporal_client, offline, engine):
        async with gateway(offline, engine=engine, temporal_client=temporal_client) as api:
            parent = await poll(api, (await api.post("/api/v1/jobs", json=run)).json()["job_id"])
            answer = await api.post(
                f"/api/v1/jobs/{parent['job_id']}/fork", json={"from_step": "format_places_data"}
            )
            child = await poll(api, answer.json()["job_id"])
    steps = answer.json()["fork"]["steps"]
    assert steps["gather"]["action"] == "rerun"
    assert "reads ${steps.fetch_hospitals.data.results}, a step inside it" in steps["gather"]["why"]
    assert child["status"] == "completed"
    records = {s["id"]: s["output"] for s in child["metadata"]["steps"]}
    parents = {s["id"]: s["output"] for s in parent["metadata"]["steps"]}
    assert records["format_places_data"] == parents["format_places_data"]


async def test_forks_follow_key_ownership_and_idempotency_keys(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    cfg = keyed(settings).model_copy(update={"llm_default_provider": "mock"})
    quick = {"workflow_name": "quickstart", "input_data": {"topic": "owners"}}
    async with harness.running_worker(temporal_client, cfg, engine):
        async with gateway(cfg, engine=engine, temporal_client=temporal_client) as api:
            job = (await api.post("/api/v1/jobs", json=quick, headers=ALICE)).json()["job_id"]
            await poll(api, job, headers=ALICE)
            bobs = (await api.post("/api/v1/jobs", json=quick, headers=BOB)).json()["job_id"]
            await poll(api, bobs, headers=BOB)
            by_bob = await api.post(f"/api/v1/jobs/{job}/fork", json={}, headers=BOB)
            key = {**ALICE, "Idempotency-Key": "fork-once"}
            once = await api.post(f"/api/v1/jobs/{job}/fork", json={}, headers=key)
            again = await api.post(f"/api/v1/jobs/{job}/fork", json={}, headers=key)
            await poll(api, once.json()["job_id"], headers=ALICE)
            by_ops = await api.post(f"/api/v1/jobs/{job}/fork", json={}, headers=OPS)
            await poll(api, by_ops.json()["job_id"], headers=OPS)
            alice_sees = (await api.get(f"/api/v1/jobs/{job}/forks", headers=ALICE)).json()
            ops_sees = (await api.get(f"/api/v1/jobs/{job}/forks", headers=OPS)).json()
            bob_lists = await api.get(f"/api/v1/jobs/{job}/forks", headers=BOB)
            bob_compares = await api.get(f"/api/v1/jobs/{bobs}/compare/{job}", headers=BOB)
    assert by_bob.status_code == 404  # another key's job is no job at all
    assert once.status_code == 202 and again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert once.json()["job_id"] == again.json()["job_id"]
    assert again.json()["fork"] == once.json()["fork"]
    assert set(actions(once.json()).values()) == {"reused"}  # no edit: nothing runs again
    assert [f["job_id"] for f in alice_sees["items"]] == [once.json()["job_id"]]
    assert [f["job_id"] for f in ops_sees["items"]] == [
        once.json()["job_id"],
        by_ops.json()["job_id"],
    ]
    assert bob_lists.status_code == 404 and bob_compares.status_code == 404
