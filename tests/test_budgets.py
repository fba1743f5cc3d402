"""Cost budgets that steer a run: on the real dev server, with the LLM provider faked at the
wire level (OpenRouter's OpenAI-format chat completions) reporting a known usage per call."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client

from activities.llm.estimate import estimate_call
from activities.llm.pricing import cost_usd
from core.contracts import JobResult
from core.settings import Settings
from core.step_outputs import LlmUsage
from tests import harness
from tests.api_server import gateway
from tests.fakes.http_server import FakeHTTPServer, Request, Response
from tests.fakes.llm_wire import openai_chat_body
from workflow_defs.loader import DefinitionError

CHAT = "/openrouter/api/v1/chat/completions"
REPO_DEFS = Path(__file__).resolve().parent.parent / "workflow_defs"
MINI = "openai/gpt-4o-mini"  # 0.15 / 0.60 USD per 1M tokens


class MeteredLLM:
    """Echoes `echo:<text>` prompts and reports a different usage for every call (prompt
    1000+n, completion 500+n tokens), keeping what it reported so totals can be checked."""

    def __init__(self) -> None:
        self.reported: list[tuple[str, LlmUsage]] = []
        self._count = itertools.count()
        self._lock = threading.Lock()

    def __call__(self, req: Request) -> Response:
        body = req.json()
        with self._lock:
            n = next(self._count)
            usage = LlmUsage(
                input_tokens=1000 + n, output_tokens=500 + n, total_tokens=1500 + 2 * n
            )
            self.reported.append((body["model"], usage))
        reply = body["messages"][-1]["content"].split("echo:", 1)[-1].strip()
        return Response(
            200,
            openai_chat_body(
                reply,
                model=body["model"],
                prompt_tokens=usage.input_tokens,
                completion_tokens=usage.output_tokens,
            ),
        )

    @property
    def models(self) -> list[str]:
        return [model for model, _ in self.reported]

    def total_cost(self, digits: int = 6) -> float:
        """Job totals are given to 6 decimals (as before budgets); budgets count to 8."""
        return round(sum(cost_usd(u, m)[0] for m, u in self.reported), digits)

    def total_tokens(self) -> int:
        return sum(u.total_tokens for _, u in self.reported)


@pytest.fixture
def fake_llm(upstream: FakeHTTPServer) -> MeteredLLM:
    answers = MeteredLLM()
    upstream.route("POST", CHAT, answers)
    return answers


def llm(
    step_id: str, prompt: str = "echo: hi", *, model: str = MINI, **extra: Any
) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "llm",
        "config": {"model": model, "prompt_text": prompt, "max_tokens": 20},
        **extra,
    }


def workflow(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "budgeted", "version": "1.0.0", "steps": list(steps), **extra}


async def run(
    client: Client, settings: Settings, engine: Engine, defn: dict[str, Any]
) -> JobResult:
    async with harness.running_worker(client, settings, engine):
        return await harness.run(client, settings, harness.load(defn, settings))


async def run_failing(
    client: Client, settings: Settings, engine: Engine, defn: dict[str, Any]
) -> dict[str, Any]:
    async with harness.running_worker(client, settings, engine):
        _, failure = await harness.run_failing(client, settings, harness.load(defn, settings))
    return failure.cause.details[0]  # type: ignore[attr-defined]


def by_path(result: JobResult) -> dict[str, Any]:
    return {r.path: r for r in result.metadata.steps}


# One call of the fake costs (1000+n)*0.15e-6 + (500+n)*0.6e-6 ≈ 0.00045 USD.


async def test_a_loop_stops_refining_once_context_cost_says_it_spent_enough(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: MeteredLLM
) -> None:
    defn = workflow(
        {
            "id": "refine",
            "type": "loop",
            "config": {
                "steps": [llm("draft", "echo: draft ${iteration}")],
                "until": "${context.cost_usd} >= 0.001",
                "max_iterations": 10,
            },
        },
        output={"spent": "${context.cost_usd}", "tokens": "${context.tokens}"},
    )
    result = await run(temporal_client, settings, engine, defn)

    # 0.00045, 0.0009, 0.00135: the third iteration crossed 0.001, and the loop stopped there.
    assert result.status == "completed"
    assert by_path(result)["refine"].summary["iterations"] == 3
    assert len(fake_llm.reported) == 3
    assert result.output == {"spent": fake_llm.total_cost(), "tokens": fake_llm.total_tokens()}


async def test_a_loop_budget_refuses_the_call_that_could_cross_it(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: MeteredLLM
) -> None:
    defn = workflow(
        {
            "id": "refine",
            "type": "loop",
            "budget": {"max_cost_usd": 0.001},
            "config": {
                "steps": [llm("draft", "echo: draft ${iteration}")],
                "until": "${iteration} > 100",
                "max_iterations": 10,
            },
        }
    )
    error = await run_failing(temporal_client, settings, engine, defn)

    # Spent 0.00135 after three calls: the fourth's worst case no longer fits.
    assert len(fake_llm.reported) == 3
    assert error["type"] == "BUDGET_EXCEEDED" and error["retryable"] is False
    assert error["step_id"] == "refine#4.draft"
    budget = error["details"]["budget"]
    assert budget["budget"] == "steps.refine.budget.max_cost_usd" and budget["limit"] == 0.001
    assert budget["spent"] == fake_llm.total_cost(8)
    expected = estimate_call(
        provider=None,
        model=MINI,
        prompt="echo: draft 4",
        system_prompt=None,
        max_tokens=20,
        response_format=None,
        max_repairs=2,
    )
    assert budget["estimate"] == expected.cost_usd
    assert "steps.refine.budget.max_cost_usd" in error["message"]
    assert f"spent {fake_llm.total_cost(8)}" in error["message"]


async def test_a_token_budget_on_the_definition_stops_the_run(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: MeteredLLM
) -> None:
    defn = workflow(llm("one"), llm("two"), llm("three"), budget={"max_tokens": 3000})
    error = await run_failing(temporal_client, settings, engine, defn)

    # 1500 + 1502 tokens spent: a third call (worst case 40 + 20 tokens) would pass 3000.
    assert len(fake_llm.reported) == 2
    assert error["type"] == "BUDGET_EXCEEDED" and error["step_id"] == "three"
    assert error["details"]["budget"]["budget"] == "budget.max_tokens"
    assert error["details"]["budget"]["spent"] == 3002


async def test_the_cheapest_fallback_that_fits_is_called_when_the_model_would_not(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: MeteredLLM
) -> None:
    step = llm("answer", model="openai/gpt-4", budget={"max_cost_usd": 0.0005})
    step["on_budget"] = "fallback"
    step["config"]["max_tokens"] = 200
    step["config"]["fallbacks"] = [
        {"provider": "openrouter", "model": "openai/gpt-4o"},  # 2.50 / 10.00: does not fit
        {"provider": "openrouter", "model": MINI},  # 0.15 / 0.60: fits
        {"provider": "openrouter", "model": "google/gemini-2.0-flash"},  # 0.10 / 0.40: cheapest
    ]
    result = await run(temporal_client, settings, engine, workflow(step))

    record = by_path(result)["answer"]
    assert result.status == "completed"
    assert fake_llm.models == ["google/gemini-2.0-flash"]
    assert record.output["model"] == "google/gemini-2.0-flash"
    assert any("could cross steps.answer.budget.max_cost_usd" in w for w in record.warnings)
    assert record.cost_usd == fake_llm.total_cost()


async def test_on_budget_skip_gives_a_null_output_and_a_warning(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: MeteredLLM
) -> None:
    step = llm("costly", model="openai/gpt-4", budget={"max_cost_usd": 0.0001}, on_budget="skip")
    after = llm("after", "echo: still here")
    result = await run(temporal_client, settings, engine, workflow(step, after))

    records = by_path(result)
    assert result.status == "completed"
    assert records["costly"].status == "completed" and records["costly"].output is None
    assert any(
        "skipped: a call of openai/gpt-4 could cross" in w for w in records["costly"].warnings
    )
    assert fake_llm.models == [MINI]  # only `after` called the provider


async def test_a_model_without_a_price_is_refused_under_a_cost_budget_unless_bounded(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: MeteredLLM
) -> None:
    unpriced = "acme/secret-model-9"
    error = await run_failing(
        temporal_client,
        settings,
        engine,
        workflow(llm("ask", model=unpriced), budget={"max_cost_usd": 1}),
    )
    assert fake_llm.reported == []
    assert error["type"] == "BUDGET_EXCEEDED"
    assert "no price in the price table" in error["message"]
    assert "max_cost_usd_per_call" in error["message"]
    assert error["details"]["budget"]["unknown_price"] is True

    bounded = llm("ask", model=unpriced, max_cost_usd_per_call=0.01)
    result = await run(
        temporal_client, settings, engine, workflow(bounded, budget={"max_cost_usd": 1})
    )
    assert result.status == "completed" and fake_llm.models == [unpriced]


async def test_spend_totals_equal_the_sum_of_the_usages_the_provider_reported(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: MeteredLLM
) -> None:
    defn = workflow(
        llm("first"),
        {
            "id": "fan",
            "type": "foreach",
            "budget": {"max_cost_usd": 1, "max_tokens": 100_000},
            "config": {
                "items": ["a", "b", "c", "d", "e"],
                "max_concurrency": 3,
                "steps": [llm("each", "echo: ${item}", model="openai/gpt-4o")],
            },
        },
        {
            "id": "both",
            "type": "parallel",
            "config": {
                "branches": {
                    "x": [llm("x1", model="anthropic/claude-3-5-haiku")],
                    "y": [llm("y1")],
                }
            },
        },
        budget={"max_cost_usd": 5},
        output={"spent": "${context.cost_usd}", "tokens": "${context.tokens}"},
    )
    result = await run(temporal_client, settings, engine, defn)

    assert result.status == "completed" and len(fake_llm.reported) == 8
    assert result.metadata.total_tokens == fake_llm.total_tokens()
    assert result.metadata.total_cost_usd == fake_llm.total_cost()
    assert result.output == {"spent": fake_llm.total_cost(), "tokens": fake_llm.total_tokens()}
    records = [r for r in result.metadata.steps if r.type == "llm"]
    assert round(sum(r.cost_usd for r in records), 6) == fake_llm.total_cost()


# --- validation ------------------------------------------------------------------------------


def problems(settings: Settings, defn: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as caught:
        harness.load(defn, settings)
    return [(p.path, p.message) for p in caught.value.problems]


def test_malformed_budgets_are_rejected_with_their_json_path(settings: Settings) -> None:
    found = problems(
        settings,
        workflow(
            llm("a", budget={"max_cost": 1}),
            llm("b", budget={}),
            budget={"max_cost_usd": -1},
        ),
    )
    paths = " | ".join(f"{p}: {m}" for p, m in found)
    assert "$.budget.max_cost_usd" in paths
    assert "$.steps[0].budget.max_cost" in paths
    assert "$.steps[1].budget" in paths and "give max_cost_usd, max_tokens or both" in paths
    # Checked once the definition parses: a fallback needs fallbacks to pick from.
    [(path, message)] = problems(settings, workflow(llm("c", on_budget="fallback")))
    assert path == "$.steps[0].on_budget" and "config.fallbacks" in message


def test_context_spend_is_readable_and_unknown_context_keys_are_not(settings: Settings) -> None:
    good = workflow(
        {
            "id": "refine",
            "type": "loop",
            "config": {
                "steps": [llm("draft")],
                "until": "${context.cost_usd} > 0.01 or ${context.tokens} > 5000",
                "max_iterations": 3,
            },
        },
        llm("more", when="${context.cost_usd} < 0.5"),
    )
    harness.load(good, settings)
    bad = workflow(llm("more", when="${context.spend} < 0.5"))
    [(path, message)] = problems(settings, bad)
    assert path == "$.steps[0].when" and "unknown context key 'spend'" in message


# --- the gateway ---------------------------------------------------------------------------


def held(name: str, budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """An llm call, then an approval that keeps the job running until decided."""
    defn = workflow(llm("ask"), {"id": "hold", "type": "approval", "config": {}})
    defn["name"] = name
    if budget is not None:
        defn["budget"] = budget
    return defn


@pytest.fixture
def api_settings(settings: Settings, tmp_path: Path) -> Settings:
    defs = tmp_path / "defs"
    shutil.copytree(REPO_DEFS, defs, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    spend_events = workflow(
        llm("one"),
        {"id": "pause", "type": "wait", "config": {"seconds": 1}},
        llm("two"),
        budget={"max_cost_usd": 0.5},
    )
    spend_events["name"] = "spend_events"
    for defn in (held("held_budgeted", {"max_cost_usd": 0.5}), held("held_free"), spend_events):
        (defs / f"{defn['name']}.json").write_text(json.dumps(defn))
    return settings.model_copy(
        update={
            "workflow_defs_dir": defs,
            "api_keys": [f"{WEB_NAME}:web-key-0123456789", "ops:ops-key-5555555555"],
            "api_key_budgets": {WEB_NAME: 0.0004},
        }
    )


# Unique per run: a Postgres test database keeps earlier runs' jobs of the day.
WEB_NAME = f"web{uuid.uuid4().hex[:8]}"
WEB = {"Authorization": "Bearer web-key-0123456789"}
OPS = {"Authorization": "Bearer ops-key-5555555555"}


async def poll_until(
    api: httpx.AsyncClient, job_id: str, ok: Any, headers: dict[str, str], within: float = 30
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        job = (await api.get(f"/api/v1/jobs/{job_id}", headers=headers)).json()
        if ok(job):
            return job
        assert asyncio.get_running_loop().time() < deadline, job
        await asyncio.sleep(0.2)


async def test_submit_may_lower_the_budget_but_never_raise_it(
    temporal_client: Client, api_settings: Settings, engine: Engine, fake_llm: MeteredLLM
) -> None:
    async with gateway(api_settings, engine=engine, temporal_client=temporal_client) as api:
        raised = await api.post(
            "/api/v1/jobs",
            json={"workflow_name": "held_budgeted", "budget": {"max_cost_usd": 2}},
            headers=OPS,
        )
        no_limit = await api.post(
            "/api/v1/jobs",
            json={"workflow_name": "held_budgeted", "budget": {"max_tokens": 10}},
            headers=OPS,
        )
        typo = await api.post(
            "/api/v1/jobs",
            json={"workflow_name": "held_budgeted", "budget": {"max_usd": 1}},
            headers=OPS,
        )
        async with harness.running_worker(temporal_client, api_settings, engine):
            lowered = await api.post(
                "/api/v1/jobs",
                json={"workflow_name": "held_budgeted", "budget": {"max_cost_usd": 0.00001}},
                headers=OPS,
            )
            assert lowered.status_code == 202, lowered.text
            job = await poll_until(
                api, lowered.json()["job_id"], lambda j: j["status"] == "failed", OPS
            )
            # A rerun and a fork of it run under the budget its submit set, not the definition's.
            again = []
            for how in ("rerun", "fork"):
                made = await api.post(f"/api/v1/jobs/{job['job_id']}/{how}", json={}, headers=OPS)
                assert made.status_code == 202, made.text
                again.append(
                    await poll_until(
                        api, made.json()["job_id"], lambda j: j["status"] == "failed", OPS
                    )
                )

    assert raised.status_code == 422
    assert raised.json()["detail"][0]["loc"] == ["body", "budget", "max_cost_usd"]
    assert "only lower" in raised.json()["detail"][0]["msg"]
    # Leaving max_cost_usd out would raise it to unbounded.
    assert no_limit.status_code == 422
    assert no_limit.json()["detail"][0]["loc"] == ["body", "budget", "max_cost_usd"]
    assert typo.status_code == 422 and typo.json()["detail"][0]["loc"][:2] == ["body", "budget"]
    assert job["error"]["type"] == "BUDGET_EXCEEDED"
    for failed in (job, *again):
        assert failed["error"]["type"] == "BUDGET_EXCEEDED"
        assert failed["error"]["details"]["budget"]["budget"] == "submit budget.max_cost_usd"
    assert fake_llm.reported == []


async def test_a_key_over_its_daily_budget_gets_429_counting_running_jobs(
    temporal_client: Client, api_settings: Settings, engine: Engine, fake_llm: MeteredLLM
) -> None:
    async with harness.running_worker(temporal_client, api_settings, engine):
        async with gateway(api_settings, engine=engine, temporal_client=temporal_client) as api:
            first = await api.post("/api/v1/jobs", json={"workflow_name": "held_free"}, headers=WEB)
            assert first.status_code == 202, first.text
            job_id = first.json()["job_id"]
            # The llm call is done and the job waits for its approval: still running.
            running = await poll_until(
                api,
                job_id,
                lambda j: (j.get("progress") or {}).get("steps", {}).get("hold") == "running",
                WEB,
            )
            second = await api.post(
                "/api/v1/jobs", json={"workflow_name": "held_free"}, headers=WEB
            )
            other_key = await api.post(
                "/api/v1/jobs", json={"workflow_name": "held_free"}, headers=OPS
            )
            await api.post(f"/api/v1/jobs/{job_id}/cancel", headers=WEB)
            await api.post(f"/api/v1/jobs/{other_key.json()['job_id']}/cancel", headers=OPS)
            await poll_until(api, job_id, lambda j: j["status"] == "cancelled", WEB)
            after = await api.post("/api/v1/jobs", json={"workflow_name": "held_free"}, headers=WEB)

    spent = fake_llm.reported[0][1]
    one_call = cost_usd(spent, MINI)[0]
    assert running["status"] == "running"
    assert running["progress"]["cost_usd"] == round(one_call, 6)
    assert running["progress"]["tokens"] == spent.total_tokens
    assert second.status_code == 429, second.text
    body = second.json()
    assert body["error"] == "DailyBudgetExceeded"
    assert body["spent_usd"] == round(one_call, 6) and body["budget_usd"] == 0.0004
    assert WEB_NAME in body["message"] and "0.0004" in body["message"]
    assert other_key.status_code == 202  # the budget is per key
    # Once the job ended its row carries the spend: still over the budget.
    assert after.status_code == 429 and after.json()["spent_usd"] == round(one_call, 6)


async def test_a_batched_foreach_splits_what_is_left_among_its_batches(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: MeteredLLM
) -> None:
    items = list(range(120))  # past 100 items: three child workflows of 50, 50 and 20
    defn = workflow(
        {
            "id": "fan",
            "type": "foreach",
            "budget": {"max_cost_usd": 0.009},
            "config": {
                "items": items,
                "batch_size": 50,
                "max_concurrency": 3,
                "on_item_error": "null",
                "steps": [llm("each", "echo: ${item}")],
            },
        }
    )
    result = await run(temporal_client, settings, engine, defn)

    # Each batch may spend 0.003 and pays ~0.00045 a call: seven calls, then every later
    # item of the batch is refused. The batches can't overspend each other's share.
    record = by_path(result)["fan"]
    assert result.status == "completed"
    assert len(fake_llm.reported) == 21
    assert record.cost_usd == fake_llm.total_cost(8)
    assert len(record.summary["failed"]) == 120 - 21


def documented_example() -> dict[str, Any]:
    """The Budgets section's worked example in docs/dsl.md, as the docs show it."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "dsl.md").read_text()
    block = text.split("<!-- budget-example -->", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    return json.loads(block)


async def test_the_documented_budget_example_runs_as_described_on_the_mock(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    result = await run(temporal_client, settings, engine, documented_example())

    records = by_path(result)
    assert result.status == "completed"
    assert records["refine"].summary["iterations"] == 6
    assert records["polish"].output is None
    assert any(
        "could cross steps.polish.budget.max_tokens" in w for w in records["polish"].warnings
    )
    assert result.output == {
        "draft": "Draft 6: the worker dies, the history stays, the run goes on.",
        "polished": None,
        "tokens": 162,
        "cost_usd": 0.0,
    }
    assert result.metadata.total_tokens == 162


async def test_a_sub_workflow_child_may_spend_only_what_the_parent_has_left(
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    fake_llm: MeteredLLM,
    tmp_path: Path,
) -> None:
    child = workflow(
        {
            "id": "refine",
            "type": "loop",
            "config": {
                "steps": [llm("draft")],
                "until": "${iteration} > 100",
                "max_iterations": 10,
            },
        }
    )
    child["name"] = "spender"
    parent = workflow(
        llm("first"),
        {"id": "delegate", "type": "sub_workflow", "config": {"workflow": "spender"}},
        budget={"max_cost_usd": 0.001},
    )
    parent["name"] = "spend_parent"
    defs = tmp_path / "defs"
    shutil.copytree(REPO_DEFS, defs, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    for defn in (child, parent):
        (defs / f"{defn['name']}.json").write_text(json.dumps(defn))
    cfg = settings.model_copy(update={"workflow_defs_dir": defs})
    async with harness.running_worker(temporal_client, cfg, engine):
        async with gateway(cfg, engine=engine, temporal_client=temporal_client) as api:
            job_id = (
                await api.post("/api/v1/jobs", json={"workflow_name": "spend_parent"})
            ).json()["job_id"]
            done = ("completed", "failed", "cancelled", "timed_out")
            job = await poll_until(api, job_id, lambda j: j["status"] in done, {})
            spent_child = await poll_until(
                api, f"{job_id}.delegate", lambda j: j["status"] in done, {}
            )

    # The parent spent 0.00045 first, so the child had 0.00055 left: two calls fit, then
    # refused at spent 0.00090225 (the fake bills more than max_tokens; a real provider won't).
    assert len(fake_llm.reported) == 3
    assert spent_child["error"]["step_id"] == "refine#3.draft"
    assert spent_child["error"]["type"] == "BUDGET_EXCEEDED"
    assert spent_child["error"]["details"]["budget"]["budget"] == "submit budget.max_cost_usd"
    assert job["status"] == "failed" and job["error"]["step_id"] == "delegate"


async def test_step_events_carry_the_spend_so_far(
    temporal_client: Client, api_settings: Settings, engine: Engine, fake_llm: MeteredLLM
) -> None:
    async with harness.running_worker(temporal_client, api_settings, engine):
        async with gateway(api_settings, engine=engine, temporal_client=temporal_client) as api:
            job_id = (
                await api.post("/api/v1/jobs", json={"workflow_name": "spend_events"}, headers=OPS)
            ).json()["job_id"]
            events = await read_events(api, job_id, OPS)

    steps = [d for name, d in events if name == "step"]
    job = next(d for name, d in events if name == "job")
    costs = [d["spent"]["cost_usd"] for d in steps]
    assert costs == sorted(costs)  # the spend so far never goes down
    one = next(d for d in steps if d["path"] == "one" and d["phase"] == "finished")
    assert one["spent"]["cost_usd"] >= round(cost_usd(fake_llm.reported[0][1], MINI)[0], 6)
    assert steps[-1]["spent"] == {
        "tokens": job["metadata"]["total_tokens"],
        "cost_usd": job["metadata"]["total_cost_usd"],
    }
    assert job["metadata"]["total_cost_usd"] == fake_llm.total_cost()


async def read_events(
    api: httpx.AsyncClient, job_id: str, headers: dict[str, str]
) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    async with api.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=headers) as resp:
        assert resp.status_code == 200
        name = ""
        async for line in resp.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


# --- replay ----------------------------------------------------------------------------------

HISTORIES = Path(__file__).parent / "histories"


@pytest.mark.skipif(
    not os.environ.get("LLMFLOW_RECORD_HISTORIES"),
    reason="set LLMFLOW_RECORD_HISTORIES=1 to re-record",
)
async def test_record_budgeted_history(
    temporal_client: Client, settings: Settings, engine: Engine, fake_llm: MeteredLLM
) -> None:
    """A run that budgets steer (a loop stopped by ${context.cost_usd}, a fallback chosen and a
    step skipped for budget), replayed in CI by tests/test_replay.py."""
    fallback = llm("cheap", model="openai/gpt-4", budget={"max_cost_usd": 0.0005})
    fallback["on_budget"] = "fallback"
    fallback["config"]["fallbacks"] = [{"provider": "openrouter", "model": MINI}]
    defn = workflow(
        {
            "id": "refine",
            "type": "loop",
            "budget": {"max_cost_usd": 0.01},
            "config": {
                "steps": [llm("draft", "echo: draft ${iteration}")],
                "until": "${context.cost_usd} >= 0.001",
                "max_iterations": 10,
            },
        },
        fallback,
        llm("costly", model="openai/gpt-4", budget={"max_cost_usd": 0.0001}, on_budget="skip"),
        budget={"max_cost_usd": 0.05},
    )
    async with harness.running_worker(temporal_client, settings, engine):
        handle = await harness.start(temporal_client, settings, harness.load(defn, settings))
        result = await handle.result()
        history = await handle.fetch_history()
    assert result.status == "completed" and len(fake_llm.reported) == 4
    (HISTORIES / "budgets.json").write_text(history.to_json() + "\n")


# --- units -----------------------------------------------------------------------------------


def test_the_worst_case_covers_repairs_and_prices_what_the_table_knows() -> None:
    def estimate(**kw: Any) -> Any:
        args: dict[str, Any] = {
            "provider": "openrouter",
            "model": MINI,
            "prompt": "héllo",  # 6 bytes in UTF-8
            "system_prompt": "be brief",  # 8 bytes
            "max_tokens": 100,
            "response_format": None,
            "max_repairs": 2,
        }
        return estimate_call(**{**args, **kw})

    text = estimate()
    assert text.tokens == (6 + 8 + 32) + 100
    assert text.cost_usd == round(((6 + 8 + 32) * 0.15 + 100 * 0.60) / 1_000_000, 8)
    # JSON: up to 3 calls, the 2nd and 3rd re-sending the invalid reply and a repair turn.
    json_call = estimate(response_format="json")
    assert json_call.tokens == 3 * 46 + (100 + 1024) * 3 + 3 * 100
    assert estimate(provider="mock").cost_usd == 0.0
    assert estimate(model="acme/unknown").cost_usd is None
    assert estimate(model="acme/unknown", max_cost_usd_per_call=0.25).cost_usd == 0.25


async def test_a_budgeted_key_gets_503_when_its_spend_cannot_be_read(settings: Settings) -> None:
    from api import key_budgets
    from core.db import make_engine

    unreachable = make_engine("postgresql://postgres@127.0.0.1:1/nowhere")
    budgets = settings.model_copy(update={"api_key_budgets": {"web": 1.0}})
    with pytest.raises(key_budgets.BudgetUnknown, match="daily budget of API key 'web'"):
        await key_budgets.check("web", settings=budgets, engine=unreachable, temporal=None)  # type: ignore[arg-type]
    # A key without a budget never reads the database.
    await key_budgets.check("ops", settings=budgets, engine=unreachable, temporal=None)  # type: ignore[arg-type]
