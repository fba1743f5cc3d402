"""`llmflow run --wait` and `llmflow jobs watch` as a user runs them: separate processes
against the test's Temporal server, with a worker in the test. Exit codes are the job's (0
completed, 1 failed/cancelled/timed out, 2 usage), every time; a streamed step's text is
printed as it arrives."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.settings import Settings
from tests import harness

ROOT = Path(__file__).resolve().parents[1]
REPO_DEFS = ROOT / "workflow_defs"
LLMFLOW = [sys.executable, "-m", "core.cli"]
RUNS = 50
AT_ONCE = 5


def story(latency_ms: int) -> dict[str, Any]:
    return {
        "name": "cli_story",
        "version": "1.0.0",
        "steps": [
            {
                "id": "story",
                "type": "llm",
                "config": {
                    "provider": "mock",
                    "model": "storyteller",
                    "prompt_text": "A story about ${input.topic}",
                    "mock_response": "Once upon a time a worker died, and the job went on anyway.",
                    "mock_latency_ms": latency_ms,
                    "stream": True,
                },
            }
        ],
    }


def failing() -> dict[str, Any]:
    return {
        "name": "cli_fails",
        "version": "1.0.0",
        "steps": [
            {
                "id": "boom",
                "type": "transform",
                "config": {"operation": "json_parse", "input": "not json"},
            }
        ],
    }


@pytest.fixture
def cli_settings(settings: Settings, tmp_path: Path) -> Settings:
    defs = tmp_path / "defs"
    shutil.copytree(REPO_DEFS, defs, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (defs / "cli_story.json").write_text(json.dumps(story(900)))
    (defs / "cli_fails.json").write_text(json.dumps(failing()))
    return settings.model_copy(
        update={
            "workflow_defs_dir": defs,
            "redis_url": os.environ.get("TEST_REDIS_URL"),
            "llm_default_provider": "mock",
        }
    )


def cli_env(settings: Settings) -> dict[str, str]:
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "WORKFLOW_DEFS_DIR": str(settings.workflow_defs_dir),
        "DATABASE_URL": settings.database_url,
        "LLM_DEFAULT_PROVIDER": "mock",
    }
    env.pop("REDIS_URL", None)
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    return env


async def llmflow(settings: Settings, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *LLMFLOW,
        *args,
        env=cli_env(settings),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_run_wait_prints_streamed_text_and_the_result(
    temporal_client: Client, cli_settings: Settings, engine: Engine
) -> None:
    if not cli_settings.redis_url:
        pytest.skip("TEST_REDIS_URL is not set")
    async with harness.running_worker(temporal_client, cli_settings, engine):
        code, out, err = await llmflow(
            cli_settings, "run", "cli_story", "--input", '{"topic": "durability"}', "--wait"
        )
    assert code == 0, err
    result = json.loads(out)
    text = result["output"]["content"]
    assert result["status"] == "completed" and text.startswith("Once upon a time")
    assert "── story (streaming) ──" in err
    assert text in err.replace("\n── ", "")  # the pieces, printed in order, make the text


async def test_run_wait_exit_codes_are_reliable(
    temporal_client: Client, cli_settings: Settings, engine: Engine
) -> None:
    fast = cli_settings.model_copy(update={"redis_url": None})
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(*args: str) -> tuple[int, str, str]:
        async with gate:
            return await llmflow(fast, *args)

    async with harness.running_worker(temporal_client, fast, engine):
        runs = await asyncio.gather(
            *[
                one("run", "quickstart", "--input", '{"topic": "exits"}', "--wait")
                for _ in range(RUNS)
            ]
        )
        failed = await one("run", "cli_fails", "--wait")
    unknown = await one("run", "no_such_workflow", "--wait")
    no_version = await one("run", "quickstart", "--version", "9.9.9", "--wait")
    codes = [code for code, _, _ in runs]
    assert codes == [0] * RUNS, [(c, e[-300:]) for c, _, e in runs if c != 0]
    assert all(json.loads(out)["status"] == "completed" for _, out, _ in runs)
    assert failed[0] == 1 and "failed" in failed[2]
    assert unknown[0] == 2 and "workflow 'no_such_workflow' not found" in unknown[2]
    assert no_version[0] == 2
    assert "workflow 'quickstart' has no version 9.9.9; versions: 1.0.0" in no_version[2]


async def test_jobs_watch_follows_a_job_to_its_end(
    temporal_client: Client, cli_settings: Settings, engine: Engine
) -> None:
    if not cli_settings.redis_url:
        pytest.skip("TEST_REDIS_URL is not set")
    async with harness.running_worker(temporal_client, cli_settings, engine):
        loaded = harness.load(story(1500), cli_settings)
        handle = await harness.start(temporal_client, cli_settings, loaded, {"topic": "watch"})
        code, out, err = await llmflow(cli_settings, "jobs", "watch", handle.id)
        result = await handle.result()
    assert code == 0, err
    assert "[completed] cli_story 1.0.0" in out
    assert "── story (streaming) ──" in out
    assert result.output["content"] in out.replace("\n── ", "")
    missing = await llmflow(cli_settings, "jobs", "watch", "no-such-job")
    assert missing[0] == 2
