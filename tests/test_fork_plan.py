"""fork_plan, the pure part of a fork: which steps keep the parent's outputs, from the
references they read. (The API around it is tests/test_fork.py, on the real dev server.)"""

from __future__ import annotations

from typing import Any

import pytest

from api.fork_plan import ForkPlan, PlanError, StartAt, parse_start, plan_fork
from api.fork_service import merge_patch


def step(step_id: str, **config: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "transform", "config": config}


def done(step_id: str, output: Any, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "path": step_id, "status": "completed", "output": output, **extra}


STEPS = [
    step("weather", input="${input.city}"),
    step("places", input="${input.lat},${input.lng}"),
    step("sheet", input="${steps.weather.data.temp} ${steps.places.output}"),
]
RECORDS = [
    done("weather", {"data": {"temp": 20, "wind": 3}}),
    done("places", "p"),
    done("sheet", "s"),
]
INPUT = {"city": "Oslo", "lat": 1, "lng": 2, "family_size": 1}


def plan(**kw: Any) -> ForkPlan:
    args: dict[str, Any] = {
        "parent_steps": STEPS,
        "parent_prompts": {},
        "steps": STEPS,
        "prompts": {},
        "records": RECORDS,
        "parent_input": INPUT,
        "new_input": INPUT,
        "start": None,
        "output_overrides": {},
    }
    return plan_fork(**{**args, **kw})


def acts(p: ForkPlan) -> dict[str, str]:
    return {sid: s["action"] for sid, s in p.steps.items()}


def test_no_edit_reuses_every_step() -> None:
    p = plan()
    assert set(acts(p).values()) == {"reused"}
    assert p.reuse_steps == {r["id"]: r["output"] for r in RECORDS}


def test_an_input_nobody_reads_changes_nothing_and_one_read_reruns_its_readers() -> None:
    assert set(acts(plan(new_input={**INPUT, "family_size": 6})).values()) == {"reused"}
    p = plan(new_input={**INPUT, "lat": 5})
    assert acts(p) == {"weather": "reused", "places": "rerun", "sheet": "rerun"}
    assert p.steps["places"]["why"] == "reads ${input.lat}, which input_patch changed"
    assert "places" not in p.reuse_steps


def test_an_override_reruns_only_readers_of_the_part_that_changed() -> None:
    same_temp = plan(output_overrides={"weather": {"data": {"temp": 20, "wind": 99}}})
    assert acts(same_temp) == {"weather": "overridden", "places": "reused", "sheet": "reused"}
    hotter = plan(output_overrides={"weather": {"data": {"temp": 30}}})
    assert acts(hotter)["sheet"] == "rerun"
    assert hotter.reuse_steps["weather"] == {"data": {"temp": 30}}
    assert hotter.steps["sheet"]["why"] == (
        "reads ${steps.weather.data.temp}, which output_overrides changed"
    )


def test_a_changed_definition_or_prompt_reruns_the_step_and_its_readers() -> None:
    changed = [STEPS[0], step("places", input="${input.lat}"), STEPS[2]]
    p = plan(steps=changed, step_overrides=frozenset({"places"}))
    assert acts(p) == {"weather": "reused", "places": "rerun", "sheet": "rerun"}
    assert p.steps["places"]["why"].startswith("step_overrides changed it (config hash ")
    llm = {"id": "ask", "type": "llm", "config": {"prompt_template": "ask.md"}}
    prompt_changed = plan(
        parent_steps=[llm],
        steps=[llm],
        records=[done("ask", {"content": "x"})],
        parent_prompts={"ask.md": "About ${input.city}"},
        prompts={"ask.md": "Tell me about ${input.city}"},
    )
    assert prompt_changed.steps["ask"]["why"].startswith("the definition changed it")
    # The prompt's own references count: a template reading ${input.city} reruns on a new city.
    read_in_prompt = plan(
        parent_steps=[llm],
        steps=[llm],
        records=[done("ask", {"content": "x"})],
        parent_prompts={"ask.md": "About ${input.city}"},
        prompts={"ask.md": "About ${input.city}"},
        new_input={**INPUT, "city": "Bergen"},
    )
    assert acts(read_in_prompt) == {"ask": "rerun"}


def test_a_step_without_a_completed_record_runs_again() -> None:
    records = [RECORDS[0], {**RECORDS[1], "status": "skipped"}, {**RECORDS[2], "status": "failed"}]
    p = plan(records=records)
    assert acts(p) == {"weather": "reused", "places": "rerun", "sheet": "rerun"}
    assert "skipped in the parent run" in p.steps["places"]["why"]
    new = plan(steps=[*STEPS, step("extra", input="x")], records=RECORDS)
    assert new.steps["extra"]["why"].startswith("not in the parent's definition")


def test_from_step_reruns_it_and_everything_after() -> None:
    p = plan(start=StartAt("places", "places"))
    assert acts(p) == {"weather": "reused", "places": "rerun", "sheet": "rerun"}
    assert p.steps["sheet"]["why"] == "after from_step 'places'"


FOREACH = {
    "id": "enrich",
    "type": "foreach",
    "config": {"items": "${input.items}", "steps": [step("summarize", input="${item}")]},
}


def test_a_foreach_item_path_keeps_the_items_before_it() -> None:
    records = [done("enrich", ["A", "B", "C"])]
    start = parse_start("enrich[2].summarize", [FOREACH])
    assert start == StartAt("enrich[2].summarize", "enrich", 2)
    p = plan(parent_steps=[FOREACH], steps=[FOREACH], records=records, start=start)
    assert p.reuse_items == {"enrich": {"0": "A", "1": "B"}}
    # A changed item list: every item runs again, whatever the path said.
    moved = plan(
        parent_steps=[FOREACH],
        steps=[FOREACH],
        records=records,
        start=start,
        new_input={**INPUT, "items": [1]},
    )
    assert moved.reuse_items == {}
    assert moved.steps["enrich"]["why"].startswith("every item runs again: reads ${input.items}")


def test_a_failed_foreach_keeps_its_completed_items_for_a_fork_from_an_item() -> None:
    failed = {
        "id": "enrich",
        "path": "enrich",
        "status": "failed",
        "summary": {"item_outputs": {"0": "A", "1": "B"}},
    }
    start = parse_start("enrich[2]", [FOREACH])
    p = plan(parent_steps=[FOREACH], steps=[FOREACH], records=[failed], start=start)
    assert p.reuse_items == {"enrich": {"0": "A", "1": "B"}}
    assert p.steps["enrich"]["why"] == "items from 2 run again; items 0-1 reused"
    with pytest.raises(PlanError, match=r"item\(s\) 1 before 3 have no recorded output"):
        failed_early = {**failed, "summary": {"item_outputs": {"0": "A", "2": "C"}}}
        plan(
            parent_steps=[FOREACH],
            steps=[FOREACH],
            records=[failed_early],
            start=parse_start("enrich[3]", [FOREACH]),
        )


@pytest.mark.parametrize(
    "text", ["nope", "summarize", "enrich[x]", "enrich[1].nope", "enrich[-1]", "a b"]
)
def test_bad_from_step_paths_name_the_field(text: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_start(text, [FOREACH])
    assert caught.value.loc == ["from_step"]


def test_merge_patch_follows_rfc_7386() -> None:
    target = {"a": {"b": 1, "c": 2}, "d": [1, 2], "e": "x"}
    patch = {"a": {"b": None, "z": 3}, "d": [3], "e": None, "f": {"g": None}}
    assert merge_patch(target, patch) == {"a": {"c": 2, "z": 3}, "d": [3], "f": {}}
    assert target["a"] == {"b": 1, "c": 2}  # the original is left as it was


GATHER = {
    "id": "gather",
    "type": "parallel",
    "config": {"branches": {"w": [step("weather", input="${input.city}")], "p": [step("pl")]}},
}
READER = step("sheet", input="${steps.weather.output}")


def test_a_step_that_runs_again_and_reads_inside_a_parallel_runs_the_parallel_again() -> None:
    records = [done("gather", {"w": 1, "p": 2}), done("sheet", "s")]
    p = plan(
        parent_steps=[GATHER, READER],
        steps=[GATHER, READER],
        records=records,
        start=StartAt("sheet", "sheet"),
    )
    # The parallel's own output keeps only its branches' last outputs, not `weather`'s view.
    assert acts(p) == {"gather": "rerun", "sheet": "rerun"}
    assert p.steps["gather"]["why"] == (
        "'sheet' runs again and reads ${steps.weather.output}, a step inside it"
    )
    with pytest.raises(PlanError) as caught:
        plan(
            parent_steps=[GATHER, READER],
            steps=[GATHER, READER],
            records=records,
            start=StartAt("sheet", "sheet"),
            output_overrides={"gather": {"w": 1}},
        )
    assert caught.value.loc == ["output_overrides", "gather"]
    untouched = plan(parent_steps=[GATHER, READER], steps=[GATHER, READER], records=records)
    assert set(acts(untouched).values()) == {"reused"}
