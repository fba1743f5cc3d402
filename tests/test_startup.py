"""Start-up contracts: bare dev server gets its search attributes, bad definitions stop start-up."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from core.cli.main import main as cli_main
from core.settings import Settings
from core.temporal import ensure_search_attributes
from tests import harness
from tests.conftest import TEMPORAL_BIN, make_settings
from tests.fakes.http_server import FakeHTTPServer
from workflow_defs.catalog import load_catalog
from workflow_defs.loader import DefinitionError

REPO = Path(__file__).resolve().parents[1]


async def test_worker_registers_missing_search_attributes_on_a_bare_dev_server(
    database_url: str, engine: Engine, fake_upstream: FakeHTTPServer
) -> None:
    # A plain `temporal server start-dev`: no --search-attribute flags.
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_BIN), data_converter=pydantic_data_converter
    )
    try:
        client: Client = env.client
        added = await ensure_search_attributes(client, client.namespace)
        assert added == ["JobStatus", "WorkflowName", "WorkflowVersion"]
        assert await ensure_search_attributes(client, client.namespace) == []  # idempotent
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        assert {"JobStatus", "WorkflowName", "WorkflowVersion"} <= set(listed.custom_attributes)

        settings = make_settings(
            client, database_url, fake_upstream.url, llm_default_provider="mock"
        )
        loaded = load_catalog(settings).definitions.get("quickstart")
        assert loaded is not None
        async with harness.running_worker(client, settings, engine):
            result = await harness.run(client, settings, loaded, {"topic": "x"})
        assert result.status == "completed" and result.output["provider"] == "mock"
    finally:
        await env.shutdown()


@pytest.fixture
def broken_defs(tmp_path: Path) -> Path:
    defs = tmp_path / "defs"
    defs.mkdir()
    shutil.copy(REPO / "workflow_defs" / "services.json", defs / "services.json")
    shutil.copy(REPO / "workflow_defs" / "quickstart.json", defs / "quickstart.json")
    bad = json.loads((REPO / "workflow_defs" / "quickstart.json").read_text())
    bad["name"] = "broken"
    bad["steps"][1]["config"]["operation"] = "jion"
    (defs / "broken.json").write_text(json.dumps(bad))
    return defs


def test_gateway_refuses_to_start_on_an_invalid_definition(broken_defs: Path) -> None:
    settings = Settings(environment="test", workflow_defs_dir=broken_defs)
    with pytest.raises(DefinitionError) as info:
        create_app(settings)
    message = str(info.value)
    assert (
        "broken.json" in message and "$.steps[1].config.operation" in message and "jion" in message
    )


def test_worker_refuses_to_start_on_an_invalid_definition(broken_defs: Path) -> None:
    from worker.main import run_worker

    settings = Settings(environment="test", workflow_defs_dir=broken_defs)
    with pytest.raises(DefinitionError, match=r"broken\.json: \$\.steps\[1\]\.config\.operation"):
        asyncio.run(run_worker(settings))


def test_cli_validate_reports_file_and_path(
    broken_defs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(
        ["validate", str(broken_defs / "broken.json"), str(broken_defs / "quickstart.json")]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "✗" in out and "$.steps[1].config.operation" in out and "✓" in out


def test_cli_schema_prints_the_dsl_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "steps" in schema["properties"]


def test_cli_jobs_lists_and_shows_the_mirror(
    database_url: str,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from core.db import insert_job
    from core.models import Job
    from core.settings import get_settings

    name = f"cli_{os.urandom(4).hex()}"
    insert_job(
        engine,
        Job(job_id=f"{name}-job", workflow_name=name, workflow_version="1.0.0", status="failed"),
    )
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        assert cli_main(["jobs", "--workflow", name]) == 0
        listed = capsys.readouterr().out
        assert f"{name}-job" in listed and "failed" in listed
        assert cli_main(["jobs", "show", f"{name}-job", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["workflow_name"] == name
        assert cli_main(["jobs", "show", f"{name}-job"]) == 0
        assert f"{name}-job" in capsys.readouterr().out
        assert cli_main(["jobs", "show", "missing-job"]) == 1
    finally:
        get_settings.cache_clear()
