"""`llmflow replay <history.json | job_id>`: exit codes, accepted history shapes, and a report
that names the step where the current code diverged from a history."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from temporalio import workflow
from temporalio.client import Client, WorkflowHistory

from core.contracts import InterpreterInput, JobResult
from core.settings import Settings
from tests import harness
from tests.conftest import TEMPORAL_BIN
from tests.fakes.http_server import FakeHTTPServer
from tests.test_replay import HISTORIES, SHIPPED_RUNS, route_for
from worker.interpreter import InterpreterWorkflow
from worker.replay import history_dict, load_history_file
from worker.replay_cli import cmd_replay, run_replay
from worker.replay_report import describe_event
from workflow_defs.catalog import load_catalog
from workflow_defs.schema import ACTIVITY_STEP_TYPES

QUICKSTART = HISTORIES / "quickstart.json"


# Divergent versions of the interpreter, registered under its name as a changed deployment
# would be. Unsandboxed: they live in a test module the sandbox would re-import.
@workflow.defn(name="InterpreterWorkflow", sandboxed=False)
class SleepsBeforeEachStep(InterpreterWorkflow):
    @workflow.run
    async def run(self, inp: InterpreterInput) -> JobResult:
        return await super().run(inp)

    async def _run_step(self, step: Any, *args: Any) -> Any:
        await workflow.sleep(0.01)
        return await super()._run_step(step, *args)


@workflow.defn(name="InterpreterWorkflow", sandboxed=False)
class CallsTheWrongActivity(InterpreterWorkflow):
    @workflow.run
    async def run(self, inp: InterpreterInput) -> JobResult:
        return await super().run(inp)

    async def _execute(self, step: Any, at: Any) -> Any:
        if step.type not in ACTIVITY_STEP_TYPES:
            return await super()._execute(step, at)
        return await workflow.execute_activity(
            "http_request", {}, start_to_close_timeout=timedelta(seconds=5)
        )


@workflow.defn(name="InterpreterWorkflow", sandboxed=False)
class SleepsAtTheEnd(InterpreterWorkflow):
    @workflow.run
    async def run(self, inp: InterpreterInput) -> JobResult:
        result = await super().run(inp)
        await workflow.sleep(0.01)
        return result


async def replay_cli(target: str, **kw: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await run_replay(target, out=out, err=err, **kw)
    return code, out.getvalue(), err.getvalue()


def step_event_id(history: WorkflowHistory, step_id: str) -> int:
    for event in history.events:
        info = describe_event(event)
        if info.step_id == step_id:
            return info.event_id
    raise AssertionError(f"no activity for step {step_id} in the history")


async def run_quickstart(
    client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> str:
    route_for("quickstart", upstream)
    loaded = load_catalog(settings).definitions.get("quickstart")
    assert loaded is not None
    async with harness.running_worker(client, settings, engine):
        handle = await harness.start(client, settings, loaded, SHIPPED_RUNS["quickstart"])
        result = await handle.result()
    assert result.status == "completed", result
    return handle.id


async def test_committed_history_file_replays_ok() -> None:
    history = load_history_file(QUICKSTART)
    code, out, err = await replay_cli(str(QUICKSTART))
    assert code == 0, err
    assert out.strip() == f"replayed OK: {history.workflow_id} ({len(history.events)} events)"


def test_cmd_replay_takes_the_argparse_namespace(capsys: Any) -> None:
    assert cmd_replay(argparse.Namespace(target=str(QUICKSTART))) == 0
    assert "replayed OK: " in capsys.readouterr().out
    assert cmd_replay(argparse.Namespace(target="missing/history.json")) == 2
    assert "no such file" in capsys.readouterr().err


async def test_replay_by_job_id_fetches_the_history(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    job_id = await run_quickstart(temporal_client, settings, engine, upstream)
    # No client given: it connects with the settings, as the CLI does from the environment.
    code, out, err = await replay_cli(job_id, settings=settings)
    assert code == 0, err
    assert re.fullmatch(rf"replayed OK: {re.escape(job_id)} \(\d+ events\)\n", out)

    code, out, err = await replay_cli("no-such-job", client=temporal_client)
    assert code == 2
    assert "no workflow with id 'no-such-job'" in err


async def test_history_from_temporal_workflow_show_replays(
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
    tmp_path: Path,
) -> None:
    job_id = await run_quickstart(temporal_client, settings, engine, upstream)
    proc = await asyncio.create_subprocess_exec(
        str(TEMPORAL_BIN),
        "workflow",
        "show",
        "-w",
        job_id,
        "-o",
        "json",
        "--address",
        temporal_client.service_client.config.target_host,
        "--namespace",
        temporal_client.namespace,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, stderr.decode()
    path = tmp_path / "shown.json"
    path.write_bytes(stdout)
    code, out, err = await replay_cli(str(path))
    assert code == 0, err
    assert out.startswith(f"replayed OK: {job_id} (")


async def test_an_extra_command_before_a_step_names_that_step() -> None:
    history = load_history_file(QUICKSTART)
    explain = step_event_id(history, "explain")
    code, out, err = await replay_cli(str(QUICKSTART), workflows=[SleepsBeforeEachStep])
    assert code == 1
    assert out == ""
    assert err.startswith(f"nondeterminism: {history.workflow_id} ")
    assert re.search(rf"event:\s+{explain} ActivityTaskScheduled\n", err), err
    assert re.search(r"activity:\s+llm_call\n", err), err
    assert re.search(r"step:\s+explain\n", err), err
    assert "TMPRL1100" in err


async def test_a_mismatch_whose_message_names_no_event_is_located_by_replaying_prefixes() -> None:
    history = load_history_file(HISTORIES / "emergency_contacts.json")
    first = step_event_id(history, "fetch_weather")
    code, _, err = await replay_cli(
        str(HISTORIES / "emergency_contacts.json"), workflows=[CallsTheWrongActivity]
    )
    assert code == 1
    assert "does not match activity type" in err  # Core's message carries no event id
    assert re.search(rf"event:\s+{first} ActivityTaskScheduled\n", err), err
    assert re.search(r"step:\s+fetch_weather\n", err), err


async def test_a_non_activity_event_reports_the_step_before_it() -> None:
    history = load_history_file(QUICKSTART)
    last = history.events[-1].event_id
    code, _, err = await replay_cli(str(QUICKSTART), workflows=[SleepsAtTheEnd])
    assert code == 1
    assert re.search(rf"event:\s+{last} WorkflowExecutionCompleted\n", err), err
    # bullet_text and summary are transforms (no events): explain is the last step on record.
    explain = step_event_id(history, "explain")
    assert re.search(rf"step:\s+after step explain — event {explain} ", err), err


async def test_unusable_targets_exit_2(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    not_history = tmp_path / "other.json"
    not_history.write_text(json.dumps({"workflows": []}))
    no_events = tmp_path / "empty.json"
    no_events.write_text(json.dumps({"events": []}))
    for target, expected in [
        (str(tmp_path / "missing.json"), "no such file"),
        (str(bad_json), "not valid JSON"),
        (str(not_history), "not a workflow history"),
        (str(no_events), "no events"),
        (str(tmp_path), "not a file"),
    ]:
        code, out, err = await replay_cli(target)
        assert (code, out) == (2, ""), (target, err)
        assert expected in err, (target, err)


def test_other_history_shapes_are_accepted() -> None:
    events = json.loads(QUICKSTART.read_text())["events"]
    assert history_dict(events)["events"] == events
    assert history_dict({"history": {"events": events}})["events"] == events
