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
from temporalio.client import Client, WorkflowFailureError

from core import db
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


async def test_run_wait_shows_steps_and_streamed_text_then_the_output(
    temporal_client: Client, cli_settings: Settings, engine: Engine
) -> None:
    if not cli_settings.redis_url:
        pytest.skip("TEST_REDIS_URL is not set")
    async with harness.running_worker(temporal_client, cli_settings, engine):
        code, out, err = await llmflow(
            cli_settings, "run", "cli_story", "--input", '{"topic": "durability"}', "--wait"
        )
        quiet = await llmflow(cli_settings, "run", "cli_story", "--wait", "--quiet")
        as_json = await llmflow(cli_settings, "run", "cli_story", "--wait", "--json")
    assert code == 0, err
    lines = out.splitlines()
    # The job id and its Web UI link at once, then the steps, the streamed text, the output.
    assert lines[0].startswith("job ") and lines[0].endswith(" started")
    assert lines[1].startswith("Web UI: http") and "/workflows/" in lines[1]
    # Announced once: by its running line, or by its streamed text when that came first.
    assert "▸ story running" in out or out.index("── story (streaming) ──") < out.index("✓ story")
    assert "── story (streaming) ──" in out
    assert "✓ story completed · 1 attempt · " in out
    assert "completed in " in out
    text = "Once upon a time a worker died, and the job went on anyway."
    assert out.count(text) == 2  # streamed, then the output
    assert "\x1b[" not in out  # not a TTY: no colour codes
    assert quiet[0] == 0 and json.loads(quiet[1])["content"] == text  # the output alone
    assert as_json[0] == 0 and json.loads(as_json[1])["output"]["content"] == text


@pytest.mark.timeout(600)  # 50 separate processes, 5 at a time, on 2 cores
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
                one("run", "quickstart", "--input", '{"topic": "exits"}', "--wait", "--json")
                for _ in range(RUNS)
            ]
        )
        failed = await one("run", "cli_fails", "--wait")
        failed_json = await one("run", "cli_fails", "--wait", "--json")
    unknown = await one("run", "no_such_workflow", "--wait")
    no_version = await one("run", "quickstart", "--version", "9.9.9", "--wait")
    codes = [code for code, _, _ in runs]
    assert codes == [0] * RUNS, [(c, e[-300:]) for c, _, e in runs if c != 0]
    assert all(json.loads(out)["status"] == "completed" for _, out, _ in runs)
    assert failed[0] == 1 and "failed at step boom: TRANSFORM_ERROR" in failed[2]
    assert failed_json[0] == 1 and json.loads(failed_json[1])["status"] == "failed"
    assert unknown[0] == 2 and "workflow 'no_such_workflow' not found" in unknown[2]
    assert no_version[0] == 2
    assert "workflow 'quickstart' has no version 9.9.9; versions: 1.0.0" in no_version[2]


async def test_run_budget_flags_only_lower_the_definitions_budget(
    temporal_client: Client, cli_settings: Settings, engine: Engine
) -> None:
    budgeted = {**story(0), "name": "cli_budgeted", "budget": {"max_tokens": 100_000}}
    (cli_settings.workflow_defs_dir / "cli_budgeted.json").write_text(json.dumps(budgeted))
    fast = cli_settings.model_copy(update={"redis_url": None})
    async with harness.running_worker(temporal_client, fast, engine):
        within = await llmflow(fast, "run", "cli_budgeted", "--input", "{}", "--wait", "--json")
        lowered = await llmflow(
            fast, "run", "cli_budgeted", "--budget-tokens", "10", "--wait", "--json"
        )
    raised = await llmflow(fast, "run", "cli_budgeted", "--budget-tokens", "200000")
    assert within[0] == 0, within[2]
    assert lowered[0] == 1, lowered[2]
    error = json.loads(lowered[1])["error"]
    assert error["type"] == "BUDGET_EXCEEDED"
    assert error["details"]["budget"]["budget"] == "submit budget.max_tokens"
    assert raised[0] == 2
    assert "--budget-tokens: a submit may only lower the definition's budget" in raised[2]


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
    assert "✓ story completed · 1 attempt" in out
    assert "── story (streaming) ──" in out
    assert result.output["content"] in out.replace("\n── ", "")
    missing = await llmflow(cli_settings, "jobs", "watch", "no-such-job")
    assert missing[0] == 2


async def test_expected_errors_are_one_line_and_exit_2(
    cli_settings: Settings, tmp_path: Path
) -> None:
    not_json = await llmflow(cli_settings, "run", "quickstart", "--input", "not json", "--wait")
    missing = await llmflow(cli_settings, "run", "quickstart", "--input", str(tmp_path / "no.json"))
    away = cli_settings.model_copy(update={"temporal_address": "127.0.0.1:9"})
    unreachable = await llmflow(away, "run", "quickstart", "--input", '{"topic": "x"}')
    production = cli_settings.model_copy(update={"environment": "production"})
    env = {**cli_env(production), "ENVIRONMENT": "production", "API_KEYS": ""}
    proc = await asyncio.create_subprocess_exec(
        *LLMFLOW, "api", env=env, cwd=ROOT, stderr=asyncio.subprocess.PIPE
    )
    _, api_err = await asyncio.wait_for(proc.communicate(), timeout=60)
    for code, _, err in (not_json, missing, unreachable, (proc.returncode, "", api_err.decode())):
        assert code == 2, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "--input is not JSON" in not_json[2]
    assert "cannot read" in missing[2] and "no.json" in missing[2]
    assert "cannot reach Temporal at 127.0.0.1:9" in unreachable[2]
    assert "TEMPORAL_ADDRESS" in unreachable[2]
    assert "ENVIRONMENT=production requires API_KEYS" in api_err.decode()


async def test_jobs_show_list_cancel_and_rerun(
    temporal_client: Client, cli_settings: Settings, engine: Engine
) -> None:
    plain = cli_settings.model_copy(update={"redis_url": None})
    async with harness.running_worker(temporal_client, plain, engine):
        code, out, err = await llmflow(
            plain, "run", "quickstart", "--input", '{"topic": "tables"}', "--wait", "--json"
        )
        assert code == 0, err
        job_id = json.loads(out)["job_id"]
        shown = await llmflow(plain, "jobs", "show", job_id)
        raw = await llmflow(plain, "jobs", "show", job_id, "--json")
        story_job = await llmflow(plain, "run", "cli_story", "--wait", "--json")
        listed = await llmflow(plain, "jobs", "--workflow", "cli_story", "--limit", "3")
        empty = await llmflow(plain, "jobs", "--workflow", "no_such_workflow")
        rerun = await llmflow(plain, "jobs", "rerun", job_id, "--from-step", "summary")
        slow = await harness.start(
            temporal_client, plain, harness.load(story(60_000), plain), {"topic": "cancel me"}
        )
        cancel = await llmflow(plain, "jobs", "cancel", slow.id)
        with pytest.raises(WorkflowFailureError):
            await slow.result()
    row = db.get_job(engine, job_id)  # written like the gateway's: queued first, with its input
    assert row is not None and row.input_data["topic"] == "tables" and row.owner == "cli"
    assert row.started_at is not None and row.created_at <= row.started_at
    assert shown[0] == 0, shown[2]
    for column in ("step", "status", "attempts", "duration", "tokens", "cost", "error"):
        assert column in shown[1]
    assert "explain" in shown[1] and "completed" in shown[1] and "Web UI: http" in shown[1]
    assert "output" in shown[1]
    assert json.loads(raw[1])["job_id"] == job_id
    newest = json.loads(story_job[1])["job_id"]
    assert listed[0] == 0 and "job id" in listed[1] and newest in listed[1]
    assert empty[0] == 0 and empty[1].strip() == "no jobs"
    assert rerun[0] == 0, rerun[2]
    assert "explain" in rerun[2] and "bullet_text" in rerun[2]  # the reused steps
    assert cancel[0] == 0 and "cancel requested" in cancel[1]
