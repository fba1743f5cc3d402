"""Control flow on the step tree: parallel, foreach, switch, loop and wait, on the real dev
server, with the LLM provider faked at the wire level (it counts calls in flight)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from core.contracts import JobResult
from core.settings import Settings
from tests import harness
from tests.fakes.http_server import FakeHTTPServer, Request, Response
from tests.fakes.llm_wire import openai_chat_body, openai_error

CHAT = "/openrouter/api/v1/chat/completions"


class FakeLLM:
    """Answers `echo:<text>` prompts with <text>; `fail` prompts with a 400; `slow` ones late.
    Counts calls in flight, so a concurrency cap can be observed."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.in_flight = 0
        self.peak = 0
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, req: Request) -> Response:
        prompt = req.json()["messages"][-1]["content"]
        with self._lock:
            self.in_flight += 1
            self.calls += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            delay = 3.0 if "slow" in prompt else self.delay
            time.sleep(delay)
            if "fail" in prompt:
                return openai_error(400, "refused")
            reply = prompt.split("echo:", 1)[-1].strip()
            return Response(200, openai_chat_body(reply))
        finally:
            with self._lock:
                self.in_flight -= 1


def llm(step_id: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "llm",
        "config": {"model": "openai/gpt-4o-mini", "prompt_text": prompt, "max_tokens": 20},
        **extra,
    }


def workflow(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "flow", "version": "1.0.0", "steps": list(steps), **extra}


async def run(
    client: Client, settings: Settings, engine: Engine, defn: dict[str, Any], **input_data: Any
) -> JobResult:
    async with harness.running_worker(client, settings, engine):
        return await harness.run(client, settings, harness.load(defn, settings), input_data)


async def run_failing(
    client: Client, settings: Settings, engine: Engine, defn: dict[str, Any], **input_data: Any
) -> tuple[Any, dict[str, Any]]:
    async with harness.running_worker(client, settings, engine):
        handle, failure = await harness.run_failing(
            client, settings, harness.load(defn, settings), input_data
        )
        result = await handle.describe()
    return result, failure.cause.details[0]  # type: ignore[attr-defined]


def by_path(result: JobResult) -> dict[str, Any]:
    return {r.path: r for r in result.metadata.steps}


@pytest.fixture
def fake_llm(upstream: FakeHTTPServer) -> FakeLLM:
    answers = FakeLLM(delay=0.3)
    upstream.route("POST", CHAT, answers)
    return answers


async def test_parallel_runs_branches_at_once_and_keeps_branch_steps_referable(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: FakeLLM
) -> None:
    defn = workflow(
        {
            "id": "checks",
            "type": "parallel",
            "config": {
                "branches": {
                    "weather": [llm("sky", "echo: sunny")],
                    "places": [llm("park", "echo: green park"), llm("cafe", "echo: cafe")],
                }
            },
        },
        {
            "id": "both",
            "type": "transform",
            "config": {
                "operation": "coalesce",
                "config": {"values": ["${steps.park.content} and ${steps.sky.content}"]},
            },
        },
    )
    result = await run(temporal_client, settings, engine, defn)
    records = by_path(result)
    assert result.status == "completed"
    assert result.output == "green park and sunny"
    checks = records["checks"]
    assert checks.output["weather"]["content"] == "sunny"
    assert checks.output["places"]["content"] == "cafe"  # a branch's output is its last step's
    assert records["checks.places.park"].parent == "checks"
    assert fake_llm.peak == 2  # one call per branch at a time, both branches at once
    assert checks.summary == {
        "branches": ["weather", "places"],
        "completed": ["weather", "places"],
        "cancelled": [],
    }
    inner = [r for r in result.metadata.steps if r.parent == "checks"]
    assert checks.tokens == sum(r.tokens for r in inner) > 0
    assert result.metadata.total_tokens == checks.tokens  # counted once, not twice


async def test_parallel_fail_fast_cancels_the_other_branches(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: FakeLLM
) -> None:
    defn = workflow(
        {
            "id": "checks",
            "type": "parallel",
            "config": {
                "branches": {
                    "slow": [llm("wait_long", "echo: slow answer")],
                    "bad": [llm("refused", "echo: fail now")],
                }
            },
        }
    )
    async with harness.running_worker(temporal_client, settings, engine):
        handle, failure = await harness.run_failing(
            temporal_client, settings, harness.load(defn, settings)
        )
        desc = await handle.describe()
        history = await handle.fetch_history()
    error = failure.cause.details[0]  # type: ignore[attr-defined]
    assert desc.status == WorkflowExecutionStatus.FAILED
    # The slow branch's call was cancelled, not waited for.
    kinds = [e.WhichOneof("attributes") for e in history.events]
    assert "activity_task_cancel_requested_event_attributes" in kinds
    assert error["step_id"] == "checks.bad.refused" and error["type"] == "UPSTREAM_REJECTED"


async def test_parallel_join_any_takes_the_first_branch(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: FakeLLM
) -> None:
    defn = workflow(
        {
            "id": "race",
            "type": "parallel",
            "config": {
                "join": "any",
                "branches": {
                    "slow": [llm("tortoise", "echo: slow")],
                    "fast": [llm("hare", "echo: quick")],
                },
            },
        }
    )
    result = await run(temporal_client, settings, engine, defn)
    race = by_path(result)["race"]
    assert list(race.output) == ["fast"] and race.summary["winner"] == "fast"
    assert by_path(result)["race.slow.tortoise"].status == "cancelled"


async def test_foreach_caps_concurrency_keeps_item_order_and_adds_tokens_up(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: FakeLLM
) -> None:
    defn = workflow(
        {
            "id": "enrich",
            "type": "foreach",
            "config": {
                "items": "${input.places}",
                "as": "place",
                "max_concurrency": 2,
                "steps": [llm("summarize", "echo: ${place} #${index}")],
                "output": "${steps.summarize.content}",
            },
        }
    )
    places = ["a", "b", "c", "d", "e", "f"]
    result = await run(temporal_client, settings, engine, defn, places=places)
    assert result.output == [f"{p} #{i}" for i, p in enumerate(places)]
    assert fake_llm.peak == 2
    records = by_path(result)
    assert records["enrich[3].summarize"].parent == "enrich"
    leaves = [r for r in result.metadata.steps if r.type == "llm"]
    assert len(leaves) == 6
    assert records["enrich"].tokens == sum(r.tokens for r in leaves) == result.metadata.total_tokens
    assert records["enrich"].summary["completed"] == 6


@pytest.mark.parametrize(("bad", "ends"), [(1, "completed"), (2, "failed")])
async def test_foreach_tolerated_failures_threshold(
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    fake_llm: FakeLLM,
    bad: int,
    ends: str,
) -> None:
    defn = workflow(
        {
            "id": "enrich",
            "type": "foreach",
            "config": {
                "items": "${input.items}",
                "tolerated_failures": 1,
                "steps": [llm("ask", "echo: ${item}")],
                "output": "${steps.ask.content}",
            },
        }
    )
    items = ["x", "y", "z", "w"]
    items[:bad] = ["fail"] * bad
    if ends == "completed":
        result = await run(temporal_client, settings, engine, defn, items=items)
        assert result.output == [None, "y", "z", "w"]
        assert by_path(result)["enrich"].summary["failed"] == [0]
    else:
        _, error = await run_failing(temporal_client, settings, engine, defn, items=items)
        assert "2 of 4 items failed (tolerated: 1)" in error["message"]


async def test_foreach_drop_leaves_failed_items_out(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: FakeLLM
) -> None:
    defn = workflow(
        {
            "id": "enrich",
            "type": "foreach",
            "config": {
                "items": ["ok-1", "fail", "ok-2"],
                "on_item_error": "drop",
                "steps": [llm("ask", "echo: ${item}")],
                "output": "${steps.ask.content}",
            },
        }
    )
    result = await run(temporal_client, settings, engine, defn)
    assert result.output == ["ok-1", "ok-2"]


async def test_switch_takes_the_first_matching_case_else_default_else_fails(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: FakeLLM
) -> None:
    route = {
        "id": "route",
        "type": "switch",
        "config": {
            "cases": [
                {"when": "input.kind == 'billing'", "steps": [llm("refund", "echo: refund")]},
                {
                    "when": "input.kind == 'bug' or input.kind == 'crash'",
                    "steps": [llm("triage", "echo: triage")],
                },
            ],
            "default": [llm("generic", "echo: thanks")],
        },
    }
    results = {
        kind: await run(temporal_client, settings, engine, workflow(route), kind=kind)
        for kind in ("billing", "crash", "other")
    }
    assert results["billing"].output["content"] == "refund"
    assert by_path(results["billing"])["route"].summary["case"] == "case0"
    assert by_path(results["crash"])["route.triage"].parent == "route"
    assert by_path(results["other"])["route"].summary == {"case": "default"}
    no_default = {**route, "config": {**route["config"], "default": None}}
    _, error = await run_failing(
        temporal_client, settings, engine, workflow(no_default), kind="other"
    )
    assert "no case matched" in error["message"] and error["step_id"] == "route"


async def test_loop_runs_until_its_condition_holds(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    scores = iter([4, 6, 9, 10])
    upstream.route(
        "POST",
        CHAT,
        lambda req: Response(200, openai_chat_body(json.dumps({"score": next(scores)}))),
    )
    critique = llm("critique", "Rate the draft.", config_extra=None)
    critique["config"]["response_format"] = "json"
    del critique["config_extra"]
    defn = workflow(
        {
            "id": "refine",
            "type": "loop",
            "config": {
                "steps": [critique],
                "until": "steps.critique.data.score >= 8",
                "max_iterations": 5,
            },
        }
    )
    result = await run(temporal_client, settings, engine, defn)
    refine = by_path(result)["refine"]
    assert refine.summary["iterations"] == 3 and refine.summary["until_met"] is True
    assert [o["data"]["score"] for o in refine.summary["outputs"]] == [4, 6, 9]
    assert {"refine#1.critique", "refine#2.critique", "refine#3.critique"} <= set(by_path(result))
    assert result.output["data"]["score"] == 9


async def test_wait_sleeps_durably_and_the_deadline_bounds_it(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    short = workflow({"id": "pause", "type": "wait", "config": {"seconds": 1}})
    started = time.monotonic()
    result = await run(temporal_client, settings, engine, short)
    assert result.output == {"waited_seconds": 1.0} and time.monotonic() - started >= 1.0
    past = workflow({"id": "pause", "type": "wait", "config": {"until": "2020-01-01T00:00:00Z"}})
    assert (await run(temporal_client, settings, engine, past)).output == {"waited_seconds": 0.0}
    too_long = workflow(
        {"id": "pause", "type": "wait", "config": {"seconds": 60}}, timeout_seconds=1
    )
    _, error = await run_failing(temporal_client, settings, engine, too_long)
    assert error["type"] == "WORKFLOW_TIMEOUT" and error["step_id"] == "pause"


async def test_a_control_step_tolerates_its_failure_under_continue(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: FakeLLM
) -> None:
    defn = workflow(
        {
            "id": "checks",
            "type": "parallel",
            "error_mode": "continue",
            "default": {"fallback": True},
            "config": {"branches": {"bad": [llm("refused", "echo: fail")]}},
        },
        llm("after", "echo: went on"),
    )
    result = await run(temporal_client, settings, engine, defn)
    records = by_path(result)
    assert records["checks"].status == "failed" and records["checks"].output == {"fallback": True}
    assert result.output["content"] == "went on"


async def test_cancelling_the_job_cancels_every_running_branch(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: FakeLLM
) -> None:
    defn = workflow(
        {
            "id": "checks",
            "type": "parallel",
            "config": {
                "branches": {
                    "one": [llm("a", "echo: slow one")],
                    "two": [llm("b", "echo: slow two")],
                }
            },
        }
    )
    async with harness.running_worker(temporal_client, settings, engine):
        handle = await harness.start(temporal_client, settings, harness.load(defn, settings))
        deadline = asyncio.get_running_loop().time() + 10
        while fake_llm.in_flight < 2:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        desc = await handle.describe()
    assert desc.status == WorkflowExecutionStatus.CANCELED


# --- load-time checks of the tree ---------------------------------------------------------------


def problems_of(settings: Settings, defn: dict[str, Any]) -> list[tuple[str, str]]:
    from workflow_defs.loader import DefinitionError

    try:
        harness.load(defn, settings)
    except DefinitionError as exc:
        return [(p.path, p.message) for p in exc.problems]
    return []


def test_errors_point_into_nested_blocks(settings: Settings) -> None:
    defn = workflow(
        {
            "id": "checks",
            "type": "parallel",
            "config": {
                "branches": {
                    "weather": [
                        {
                            "id": "fetch",
                            "type": "external_api",
                            "config": {"service": "nope", "operation": "current"},
                        }
                    ]
                }
            },
        }
    )
    [(path, message)] = problems_of(settings, defn)
    assert path == "$.steps[0].config.branches.weather[0].config"
    assert "unknown service/operation nope.current" in message


def test_block_scoping_rules(settings: Settings) -> None:
    each = {
        "id": "enrich",
        "type": "foreach",
        "config": {"items": "${input.xs}", "steps": [llm("inner", "echo: ${item}")]},
    }
    branches = {
        "id": "checks",
        "type": "parallel",
        "config": {"branches": {"a": [llm("branch_step", "echo: a")]}},
    }
    # A parallel's branch steps stay referable by id; a foreach's do not; `item` only inside.
    ok = workflow(branches, llm("after", "echo: ${steps.branch_step.content}"))
    assert problems_of(settings, ok) == []
    hidden = workflow(each, llm("after", "echo: ${steps.inner.content}"))
    [(path, message)] = problems_of(settings, hidden)
    assert path == "$.steps[1].config.prompt_text" and "inside 'enrich'" in message
    outside = workflow(each, llm("after", "echo: ${item}"))
    assert "neither a variable" in problems_of(settings, outside)[0][1]
    duplicate = workflow(each, llm("inner", "echo: again"))
    assert problems_of(settings, duplicate)[0][0] == "$.steps[1].id"


def test_control_step_config_is_checked(settings: Settings) -> None:
    bad = workflow(
        {"id": "pause", "type": "wait", "config": {"seconds": 1, "until": "2030-01-01T00:00:00Z"}},
        {
            "id": "loop",
            "type": "loop",
            "config": {"steps": [llm("x", "echo: x")], "until": "x ==", "max_iterations": 3},
        },
        {
            "id": "each",
            "type": "foreach",
            "config": {"items": [], "steps": [llm("y", "echo: y")], "tolerated_failures": "lots"},
        },
    )
    paths = {path for path, _ in problems_of(settings, bad)}
    assert {"$.steps[0].config", "$.steps[2].config"} <= paths
    bad_until = workflow(
        {
            "id": "loop",
            "type": "loop",
            "config": {"steps": [llm("x", "echo: x")], "until": "x ==", "max_iterations": 3},
        },
    )
    assert problems_of(settings, bad_until)[0][0] == "$.steps[0].config.until"


def test_graph_draws_blocks_as_subgraphs() -> None:
    from api.workflow_graph import mermaid_flowchart
    from workflow_defs.schema import WorkflowDefinition

    def leaf(i: str) -> dict[str, Any]:
        config = {"operation": "pick", "config": {"keys": ["a"]}}
        return {"id": i, "type": "transform", "config": config}

    defn = WorkflowDefinition.model_validate(
        workflow(
            {
                "id": "p",
                "type": "parallel",
                "config": {"branches": {"w": [leaf("b")], "q": [leaf("c")]}},
            },
            {
                "id": "sw",
                "type": "switch",
                "config": {
                    "cases": [{"when": "input.k == 1", "steps": [leaf("e")]}],
                    "default": [leaf("f")],
                },
            },
            {
                "id": "lp",
                "type": "loop",
                "config": {"steps": [leaf("g")], "until": "input.k == 2", "max_iterations": 3},
            },
            {"id": "w8", "type": "wait", "config": {"seconds": 5}},
        )
    )
    source = mermaid_flowchart(defn)
    assert '    s0{{"p (parallel)"}}' in source and 'subgraph s0_0g["w"]' in source
    assert "    s0 --> s0_0_0" in source and "    s0 --> s0_1_0" in source
    assert '    s1 -.->|"when: input.k == 1"| s1_0_0' in source
    assert '    s1 -.->|"default"| s1_1_0' in source
    assert '    s2_0_0 -.->|"until input.k == 2"| s2' in source and "    s2 --> s3" in source
    assert '    s3>"w8 (wait)' in source
    waits = WorkflowDefinition.model_validate(
        workflow(
            {"id": "ok", "type": "approval", "config": {}},
            {"id": "paid", "type": "wait_for_event", "config": {"event": "p"}},
        )
    )
    shapes = mermaid_flowchart(waits)
    assert '    s0[/"ok (approval)"\\]' in shapes and '    s1[\\"paid (wait_for_event)"/]' in shapes
    assert source.count("subgraph") == source.count("\n    end\n") + source.count("\n        end\n")


def test_the_dsl_json_schema_recurses_into_blocks() -> None:
    from workflow_defs.schema import WorkflowDefinition

    schema = WorkflowDefinition.model_json_schema(by_alias=True)
    branches = schema["$defs"]["ParallelConfig"]["properties"]["branches"]
    mapping = branches["additionalProperties"]["items"]["discriminator"]["mapping"]
    assert {"llm", "parallel", "foreach", "switch", "loop", "wait"} <= set(mapping)


# --- committed histories of runs that use each control step -------------------------------------

HISTORIES = Path(__file__).parent / "histories"
REPO_DEFS = Path(__file__).resolve().parents[1] / "workflow_defs"
TREE = workflow(
    {
        "id": "checks",
        "type": "parallel",
        "config": {"branches": {"a": [llm("a1", "echo: x")], "b": [llm("b1", "echo: y")]}},
    },
    {
        "id": "enrich",
        "type": "foreach",
        "config": {
            "items": ["p", "q", "r"],
            "max_concurrency": 2,
            "steps": [llm("s", "echo: ${item}")],
        },
    },
    {
        "id": "route",
        "type": "switch",
        "config": {
            "cases": [{"when": "steps.a1.content == 'x'", "steps": [llm("r1", "echo: routed")]}]
        },
    },
    {"id": "pause", "type": "wait", "config": {"seconds": 1}},
    {
        "id": "refine",
        "type": "loop",
        "config": {
            "steps": [llm("c", "echo: again")],
            "until": "steps.c.content == 'again'",
            "max_iterations": 2,
        },
    },
)


@pytest.mark.skipif(
    not os.environ.get("LLMFLOW_RECORD_HISTORIES"),
    reason="set LLMFLOW_RECORD_HISTORIES=1 to re-record",
)
async def test_record_control_flow_histories(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: FakeLLM
) -> None:
    """A run through every control step, and a parallel cancelled mid-flight."""
    async with harness.running_worker(temporal_client, settings, engine):
        handle = await harness.start(temporal_client, settings, harness.load(TREE, settings))
        assert (await handle.result()).status == "completed"
        (HISTORIES / "control_flow_tree.json").write_text(
            (await handle.fetch_history()).to_json() + "\n"
        )
        slow = workflow(
            {
                "id": "checks",
                "type": "parallel",
                "config": {
                    "branches": {"one": [llm("a", "echo: slow")], "two": [llm("b", "echo: slow")]}
                },
            }
        )
        handle = await harness.start(temporal_client, settings, harness.load(slow, settings))
        deadline = asyncio.get_running_loop().time() + 10
        while fake_llm.in_flight < 2:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        (HISTORIES / "control_flow_cancelled_parallel.json").write_text(
            (await handle.fetch_history()).to_json() + "\n"
        )
        batched = workflow(
            {
                "id": "each",
                "type": "foreach",
                "config": {
                    "items": [f"i{n}" for n in range(120)],
                    "batch_size": 60,
                    "steps": [mock_llm("ask", "Say ${item}")],
                },
            }
        )
        handle = await harness.start(temporal_client, settings, harness.load(batched, settings))
        assert (await handle.result()).status == "completed"
        run_id = (await handle.describe()).run_id
        child = temporal_client.get_workflow_handle(f"{handle.id}:foreach:{run_id}:each:0")
        (HISTORIES / "control_flow_batched_foreach.json").write_text(
            (await handle.fetch_history()).to_json() + "\n"
        )
        (HISTORIES / "foreach_batch.json").write_text(
            (await child.fetch_history()).to_json() + "\n"
        )


# --- large foreach: items run in child-workflow batches -----------------------------------------


def mock_llm(step_id: str, prompt: str) -> dict[str, Any]:
    step = llm(step_id, prompt)
    step["config"]["provider"] = "mock"
    return step


async def test_a_foreach_of_2000_items_keeps_every_history_small(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    defn = workflow(
        {
            "id": "each",
            "type": "foreach",
            "config": {
                "items": "${input.items}",
                "max_concurrency": 10,
                "steps": [mock_llm("ask", "Say ${item}")],
                "output": "${steps.ask.status}",
            },
        },
        timeout_seconds=900,
    )
    items = [f"item-{i}" for i in range(2000)]
    async with harness.running_worker(temporal_client, settings, engine):
        handle = await harness.start(
            temporal_client, settings, harness.load(defn, settings), {"items": items}
        )
        result = await handle.result()
        parent = await handle.fetch_history()
        run_id = (await handle.describe()).run_id
        children = [
            await temporal_client.get_workflow_handle(
                f"{handle.id}:foreach:{run_id}:each:{n}"
            ).fetch_history()
            for n in range(40)
        ]
    assert result.status == "completed"
    assert result.output == ["completed"] * 2000
    record = by_path(result)["each"]
    assert record.summary["batches"] == 40 and record.summary["completed"] == 2000
    assert record.tokens == result.metadata.total_tokens > 0  # items' tokens reach the job
    counts = [len(parent.events)] + [len(h.events) for h in children]
    print(f"history events: parent {counts[0]}, batches {min(counts[1:])}-{max(counts[1:])}")
    assert max(counts) < 10_000, counts
    # The parent keeps one record for the foreach, not 2,000 item records.
    assert len(result.metadata.steps) == 1


async def test_a_batched_foreach_counts_failures_across_batches(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", CHAT, FakeLLM())
    items = ["fail" if i in (7, 130) else f"ok {i}" for i in range(150)]
    step = {
        "id": "each",
        "type": "foreach",
        "config": {
            "items": "${input.items}",
            "max_concurrency": 3,
            "tolerated_failures": 2,
            "steps": [llm("ask", "echo: ${item}")],
            "output": "${steps.ask.content}",
        },
    }
    result = await run(temporal_client, settings, engine, workflow(step), items=items)
    assert result.output[7] is None and result.output[130] is None
    assert result.output[149] == "ok 149"
    assert by_path(result)["each"].summary["failed"] == [7, 130]
    strict = {**step, "config": {**step["config"], "tolerated_failures": 1}}
    _, error = await run_failing(temporal_client, settings, engine, workflow(strict), items=items)
    assert "2 of 150 items failed (tolerated: 1)" in error["message"]


async def test_a_loop_cannot_outgrow_its_history(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    """Instead of continue-as-new: max_iterations is at most 100 (refused above), and even 100
    iterations of a block with an activity stay far below Temporal's event limits."""
    assert "max_iterations" in str(
        problems_of(
            settings,
            workflow(
                {
                    "id": "spin",
                    "type": "loop",
                    "config": {
                        "steps": [mock_llm("x", "x")],
                        "until": "input.a == 1",
                        "max_iterations": 101,
                    },
                }
            ),
        )
    )
    defn = workflow(
        {
            "id": "spin",
            "type": "loop",
            "config": {
                "steps": [mock_llm("ask", "round ${iteration}")],
                "until": "iteration == 0",  # never: all 100 iterations run
                "max_iterations": 100,
                "keep_last": 2,
            },
        }
    )
    async with harness.running_worker(temporal_client, settings, engine):
        handle = await harness.start(temporal_client, settings, harness.load(defn, settings))
        result = await handle.result()
        history = await handle.fetch_history()
    spin = by_path(result)["spin"]
    assert spin.summary["iterations"] == 100 and spin.summary["until_met"] is False
    assert len(spin.summary["outputs"]) == 2  # keep_last bounds the record
    assert len(history.events) < 2_000


async def test_rerunning_a_failed_foreach_runs_only_the_items_that_did_not_complete(
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
    tmp_path: Path,
) -> None:
    """A redrive, as Step Functions does for Map: completed items are reused, not paid again."""
    import shutil

    from tests.api_server import gateway
    from tests.test_api_jobs import poll

    answers = FakeLLM()
    upstream.route("POST", CHAT, answers)
    defs = tmp_path / "defs"
    shutil.copytree(REPO_DEFS, defs)
    flaky = workflow(
        {
            "id": "enrich",
            "type": "foreach",
            "config": {
                "items": "${input.items}",
                "max_concurrency": 1,
                "steps": [llm("ask", "echo: ${item}")],
                "output": "${steps.ask.content}",
            },
        }
    )
    (defs / "flaky.json").write_text(json.dumps({**flaky, "name": "flaky"}))
    cfg = settings.model_copy(update={"workflow_defs_dir": defs})
    items = ["a", "b", "fail c", "d"]
    async with harness.running_worker(temporal_client, cfg, engine):
        async with gateway(cfg, engine=engine, temporal_client=temporal_client) as api:
            first_id = (
                await api.post(
                    "/api/v1/jobs", json={"workflow_name": "flaky", "input_data": {"items": items}}
                )
            ).json()["job_id"]
            first = await poll(api, first_id)
            calls_before = answers.calls
            # The provider recovers: "fail c" now answers (the fake fails prompts saying fail).
            upstream.route("POST", CHAT, FakeLLM())
            rerun = await api.post(f"/api/v1/jobs/{first_id}/rerun", json={"from_step": "enrich"})
            second = await poll(api, rerun.json()["job_id"])
    assert first["status"] == "failed" and calls_before == 3  # a, b, then c failed: d never ran
    record = next(s for s in first["metadata"]["steps"] if s["path"] == "enrich")
    assert record["summary"]["item_outputs"] == {"0": "a", "1": "b"}
    assert rerun.json()["reused_steps"] == ["enrich[0]", "enrich[1]"]
    assert second["status"] == "failed"  # "fail c" still says fail to the fake
    asked = {s["path"] for s in second["metadata"]["steps"] if s["type"] == "llm"}
    assert "enrich[2].ask" in asked
    assert not asked & {"enrich[0].ask", "enrich[1].ask"}  # a and b were not asked again


def failing_block(kind: str) -> dict[str, Any]:
    inner = [llm("inner", "echo: fail")]
    configs: dict[str, dict[str, Any]] = {
        "parallel": {"branches": {"only": inner}},
        "foreach": {"items": ["x"], "steps": inner},
        "switch": {"cases": [{"when": "input.go == true", "steps": inner}]},
        "loop": {"steps": inner, "until": "input.go == true", "max_iterations": 2},
    }
    return {"id": "block", "type": kind, "config": configs[kind]}


@pytest.mark.parametrize("kind", ["parallel", "foreach", "switch", "loop"])
@pytest.mark.parametrize("mode", ["fail", "continue"])
async def test_a_failing_block_under_each_error_mode(
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    fake_llm: FakeLLM,
    kind: str,
    mode: str,
) -> None:
    step = {**failing_block(kind), "error_mode": mode, "default": {"fallback": kind}}
    defn = workflow(step, llm("after", "echo: after"))
    if mode == "fail":
        _, error = await run_failing(temporal_client, settings, engine, defn, go=True)
        assert error["type"] == "UPSTREAM_REJECTED" or "items failed" in error["message"]
        assert error["step_id"].startswith("block")
    else:
        result = await run(temporal_client, settings, engine, defn, go=True)
        block = by_path(result)["block"]
        assert block.status == "failed" and block.output == {"fallback": kind}
        assert result.status == "completed" and result.output["content"] == "after"


@pytest.mark.parametrize("kind", ["parallel", "foreach", "loop"])
async def test_the_job_deadline_stops_a_block(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: FakeLLM, kind: str
) -> None:
    slow = [llm("inner", "echo: slow")]
    configs: dict[str, dict[str, Any]] = {
        "parallel": {"branches": {"a": slow}},
        "foreach": {"items": ["x", "y"], "steps": slow},
        "loop": {"steps": slow, "until": "input.never == true", "max_iterations": 3},
    }
    defn = workflow({"id": "block", "type": kind, "config": configs[kind]}, timeout_seconds=1)
    _, error = await run_failing(temporal_client, settings, engine, defn)
    assert error["type"] == "WORKFLOW_TIMEOUT", error
    assert error["step_id"].startswith("block")
