"""sub_workflow: a definition run as a child job, frozen into the parent's snapshot at submit."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.contracts import InterpreterInput
from core.settings import Settings
from core.temporal import start_job
from tests import harness
from tests.api_server import gateway
from tests.test_api_jobs import poll
from workflow_defs.catalog import load_catalog
from workflow_defs.loader import DefinitionError

REPO_DEFS = Path(__file__).resolve().parents[1] / "workflow_defs"


def mock_llm(step_id: str, prompt: str) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "llm",
        "config": {"model": "m", "provider": "mock", "prompt_text": prompt},
    }


CHILD = {
    "name": "greet",
    "version": "1.0.0",
    "inputs": [{"name": "who", "type": "string", "required": True}],
    "steps": [mock_llm("hello", "Say hello to ${input.who}")],
    "output": {"greeting": "${steps.hello.content}", "who": "${input.who}"},
}
PARENT = {
    "name": "greet_team",
    "version": "1.0.0",
    "steps": [
        {
            "id": "ada",
            "type": "sub_workflow",
            "config": {"workflow": "greet", "input": {"who": "Ada"}},
        },
        {
            "id": "later",
            "type": "sub_workflow",
            "config": {
                "workflow": "greet",
                "version": "1.0.0",
                "input": {"who": "Bob"},
                "wait": False,
            },
        },
    ],
    "output": {"first": "${steps.ada.output}", "started": "${steps.later.output.job_id}"},
}


def defs_with(tmp_path: Path, *definitions: dict[str, Any]) -> Path:
    defs = tmp_path / "defs"
    shutil.copytree(REPO_DEFS, defs, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    for defn in definitions:
        (defs / f"{defn['name']}.json").write_text(json.dumps(defn))
    return defs


async def test_a_sub_workflow_runs_as_a_child_job_with_its_own_row(
    temporal_client: Client, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    cfg = settings.model_copy(update={"workflow_defs_dir": defs_with(tmp_path, CHILD, PARENT)})
    async with harness.running_worker(temporal_client, cfg, engine):
        async with gateway(cfg, engine=engine, temporal_client=temporal_client) as api:
            job_id = (await api.post("/api/v1/jobs", json={"workflow_name": "greet_team"})).json()[
                "job_id"
            ]
            job = await poll(api, job_id)
            child = await poll(api, f"{job_id}.ada")
            detached = await poll(api, job["output"]["started"])
    assert job["status"] == "completed", job["error"]
    assert job["output"]["first"]["who"] == "Ada" and job["output"]["first"]["greeting"]
    assert child["status"] == "completed" and child["parent_job_id"] == job_id
    assert child["workflow_name"] == "greet" and child["output"]["who"] == "Ada"
    assert detached["output"]["who"] == "Bob" and job["output"]["started"] == f"{job_id}.later"
    records = {s["path"]: s for s in job["metadata"]["steps"]}
    assert records["ada"]["summary"]["job_id"] == f"{job_id}.ada"
    assert records["ada"]["tokens"] == child["metadata"]["total_tokens"] > 0
    # The child's tokens count in the parent's totals (it waited for it), exactly once.
    assert job["metadata"]["total_tokens"] == records["ada"]["tokens"]


def test_the_child_definition_is_frozen_into_the_parent_snapshot(
    settings: Settings, tmp_path: Path
) -> None:
    cfg = settings.model_copy(update={"workflow_defs_dir": defs_with(tmp_path, CHILD, PARENT)})
    catalog = load_catalog(cfg)
    loaded = catalog.definitions.get("greet_team")
    assert loaded is not None
    snapshot = catalog.snapshot(loaded)
    assert set(snapshot.children) == {"greet@", "greet@1.0.0"}
    assert snapshot.children["greet@"].definition["name"] == "greet"


@pytest.mark.parametrize(
    ("definitions", "says"),
    [
        (
            [
                {
                    "name": "lonely",
                    "steps": [{"id": "x", "type": "sub_workflow", "config": {"workflow": "nope"}}],
                }
            ],
            "no workflow 'nope'",
        ),
        (
            [
                {
                    "name": "a",
                    "steps": [{"id": "to_b", "type": "sub_workflow", "config": {"workflow": "b"}}],
                },
                {
                    "name": "b",
                    "steps": [{"id": "to_a", "type": "sub_workflow", "config": {"workflow": "a"}}],
                },
            ],
            "sub_workflow cycle",
        ),
    ],
)
def test_unknown_and_cyclic_sub_workflows_are_refused_at_load(
    settings: Settings, tmp_path: Path, definitions: list[dict[str, Any]], says: str
) -> None:
    cfg = settings.model_copy(update={"workflow_defs_dir": defs_with(tmp_path, *definitions)})
    with pytest.raises(DefinitionError) as err:
        load_catalog(cfg)
    assert says in str(err.value)
    assert ".json: $.steps" in str(err.value)


async def test_cancelling_the_parent_cancels_its_child(
    temporal_client: Client, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    waits = {"name": "waits", "steps": [{"id": "ok", "type": "approval", "config": {}}]}
    parent = {
        "name": "calls_waits",
        "steps": [{"id": "inner", "type": "sub_workflow", "config": {"workflow": "waits"}}],
    }
    cfg = settings.model_copy(update={"workflow_defs_dir": defs_with(tmp_path, waits, parent)})
    async with harness.running_worker(temporal_client, cfg, engine):
        async with gateway(cfg, engine=engine, temporal_client=temporal_client) as api:
            job_id = (await api.post("/api/v1/jobs", json={"workflow_name": "calls_waits"})).json()[
                "job_id"
            ]
            child_id = f"{job_id}.inner"
            for _ in range(200):
                view = await api.get(f"/api/v1/jobs/{child_id}")
                if view.status_code == 200 and view.json()["waiting"]:
                    break
                await asyncio.sleep(0.1)
            assert (await api.post(f"/api/v1/jobs/{job_id}/cancel")).status_code == 202
            parent_job = await poll(api, job_id)
            child_job = await poll(api, child_id)
    assert parent_job["status"] == "cancelled"
    assert child_job["status"] == "cancelled"


@pytest.mark.skipif(
    not os.environ.get("LLMFLOW_RECORD_HISTORIES"),
    reason="set LLMFLOW_RECORD_HISTORIES=1 to re-record",
)
async def test_record_sub_workflow_history(
    temporal_client: Client, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    cfg = settings.model_copy(update={"workflow_defs_dir": defs_with(tmp_path, CHILD, PARENT)})
    catalog = load_catalog(cfg)
    loaded = catalog.definitions.get("greet_team")
    assert loaded is not None
    inp = InterpreterInput(job_id=f"replay-{uuid.uuid4()}", definition=catalog.snapshot(loaded))
    async with harness.running_worker(temporal_client, cfg, engine):
        handle = await start_job(temporal_client, cfg, inp)
        await handle.result()
        history = await handle.fetch_history()
    (Path(__file__).parent / "histories" / "sub_workflow.json").write_text(history.to_json() + "\n")
