"""Loading and validating definitions: every error names the file + JSON path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.paths import DEFAULT_PROMPTS_DIR, DEFAULT_WORKFLOW_DEFS_DIR
from workflow_defs.loader import (
    NON_DEFINITION_FILES,
    DefinitionError,
    LoadedDefinition,
    Problem,
    load_definition_file,
    load_registry,
)
from workflow_defs.schema import WorkflowDefinition, version_key
from workflow_defs.services import load_services

SEED_FILE = Path(__file__).resolve().parents[2] / "shared" / "seed" / "emergency_contacts.json"
SERVICES = load_services(DEFAULT_WORKFLOW_DEFS_DIR / "services.json")


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    root = tmp_path / "prompts"
    files = {
        "wf/ok.md": "Hello ${name}. {{include:../common/style.md}}",
        "common/style.md": "Be brief.",
        "wf/cy1.md": "{{include:cy2.md}}",
        "wf/cy2.md": "{{include:cy1.md}}",
        "wf/mystery.md": "Hello ${mystery}",
        "wf/escape.md": "{{include:../../secret.txt}}",
        "wf/later.md": "Use ${steps.after.output}",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    (tmp_path / "secret.txt").write_text("TOP-SECRET", encoding="utf-8")
    return root


def transform(step_id: str = "t", **config: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "transform", "config": {"operation": "join", **config}}


def llm(step_id: str = "l", **config: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "llm", "config": {"model": "openai/gpt-4o-mini", **config}}


def api(step_id: str = "a", **config: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "external_api", "config": config}


def workflow(*steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": "wf", "version": "1.0.0", "steps": list(steps), **fields}


def write_json(directory: Path, name: str, data: Any) -> Path:
    path = directory / name
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def load(tmp_path: Path, prompts_dir: Path, data: Any, name: str = "wf.json") -> LoadedDefinition:
    path = write_json(tmp_path, name, data)
    return load_definition_file(path, prompts_dir=prompts_dir, has_service=SERVICES.has)


def problems_of(
    tmp_path: Path, prompts_dir: Path, data: Any, name: str = "wf.json"
) -> list[Problem]:
    with pytest.raises(DefinitionError) as exc:
        load(tmp_path, prompts_dir, data, name)
    problems = exc.value.problems
    assert problems, "a DefinitionError must list its problems"
    assert all(p.source == name for p in problems), problems
    # str() lists every problem as "file: path: message".
    for p in problems:
        assert f"{name}: {p.path}: {p.message}" in str(exc.value)
    return problems


def assert_problem(problems: list[Problem], path: str, *fragments: str) -> Problem:
    at_path = [p for p in problems if p.path == path]
    assert at_path, f"no problem at {path}: {problems}"
    for p in at_path:
        if all(f in p.message for f in fragments):
            return p
    raise AssertionError(f"no problem at {path} mentioning {fragments}: {at_path}")


# --- file-level errors -------------------------------------------------------------------------


def test_invalid_json_names_line_and_column(tmp_path: Path, prompts_dir: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "name": "wf",\n  oops\n}\n', encoding="utf-8")
    with pytest.raises(DefinitionError) as exc:
        load_definition_file(path, prompts_dir=prompts_dir)
    (problem,) = exc.value.problems
    assert (problem.source, problem.path) == ("broken.json", "$")
    assert "invalid JSON at line 3 column 3" in problem.message


def test_unreadable_file(tmp_path: Path, prompts_dir: Path) -> None:
    with pytest.raises(DefinitionError) as exc:
        load_definition_file(tmp_path / "absent.json", prompts_dir=prompts_dir)
    (problem,) = exc.value.problems
    assert (problem.source, problem.path) == ("absent.json", "$")
    assert "cannot read file" in problem.message


@pytest.mark.parametrize("data", [[1, 2], "steps", 3, None])
def test_definition_must_be_an_object(tmp_path: Path, prompts_dir: Path, data: Any) -> None:
    problems = problems_of(tmp_path, prompts_dir, data, name="list.json")
    assert_problem(problems, "$", "must be a JSON object")


def test_missing_steps(tmp_path: Path, prompts_dir: Path) -> None:
    problems = problems_of(tmp_path, prompts_dir, {"name": "wf"})
    assert_problem(problems, "$.steps", "required")


def test_empty_steps(tmp_path: Path, prompts_dir: Path) -> None:
    problems = problems_of(tmp_path, prompts_dir, workflow())
    assert_problem(problems, "$.steps", "at least 1")


# --- step shape ----------------------------------------------------------------------------------


def test_unknown_step_type(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(transform(), {"id": "b", "type": "bogus", "config": {}})
    problems = problems_of(tmp_path, prompts_dir, data)
    problem = assert_problem(problems, "$.steps[1].type", "unknown step type 'bogus'", "llm")
    assert "later" not in problem.message


@pytest.mark.parametrize("kind", ["wait_for_signal"])
def test_control_flow_type_says_later(tmp_path: Path, prompts_dir: Path, kind: str) -> None:
    data = workflow(transform(), {"id": "b", "type": kind, "config": {}})
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[1].type", repr(kind), "later release")


def test_step_without_type(tmp_path: Path, prompts_dir: Path) -> None:
    problems = problems_of(tmp_path, prompts_dir, workflow({"id": "x", "config": {}}))
    assert_problem(problems, "$.steps[0].type", "no 'type'")


def test_duplicate_step_ids(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(transform("a"), transform("b"), transform("a"))
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[2].id", "duplicate step id 'a'", "$.steps[0]")


@pytest.mark.parametrize("bad_id", ["a b", "a.b", "a/b", "café", "", "x" * 101])
def test_bad_step_id_characters(tmp_path: Path, prompts_dir: Path, bad_id: str) -> None:
    problems = problems_of(tmp_path, prompts_dir, workflow(transform(bad_id)))
    assert_problem(problems, "$.steps[0].id")


def test_good_step_ids(tmp_path: Path, prompts_dir: Path) -> None:
    loaded = load(tmp_path, prompts_dir, workflow(transform("Fetch_weather-2")))
    assert loaded.definition.steps[0].id == "Fetch_weather-2"


# --- references ---------------------------------------------------------------------------------


def test_reference_to_unknown_step(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(transform("a", input="${steps.ghost.output}"))
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].config.input", "'ghost'", "does not exist")


def test_reference_to_later_step(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(transform("a", input="${steps.b.output}"), transform("b"))
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].config.input", "'b'", "runs later")


def test_reference_to_itself_is_not_earlier(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(transform("a", input="${steps.a.output}"))
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].config.input", "'a'")


def test_reference_with_unknown_root(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(transform("a", input={"x": ["${inputs.lat}"]}))
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].config.input", "unknown reference root 'inputs'")


def test_reference_with_bad_syntax(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(transform("a", input="${input.a b}"))
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].config.input", "bad reference path")


def test_reference_in_transform_config(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(transform("a", config={"separator": "${steps.nope.output}"}))
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].config.config", "'nope'")


def test_reference_in_api_parameters(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(
        api(service="weatherapi", method="current", parameters={"q": "${steps.b.output}"}),
        transform("b"),
    )
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].config.parameters", "runs later")


def test_reference_in_output(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(transform("a"), output={"x": "${steps.a.output}", "y": "${steps.zz.data}"})
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.output", "'zz'", "does not exist")
    assert len(problems) == 1


def test_every_problem_is_reported_at_once(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(
        transform("a", input="${steps.ghost.output}"),
        {**transform("b"), "when": "a =="},
        transform("a"),
    )
    problems = problems_of(tmp_path, prompts_dir, data)
    assert {p.path for p in problems} == {
        "$.steps[0].config.input",
        "$.steps[1].when",
        "$.steps[2].id",
    }


# --- services, transforms, conditions ------------------------------------------------------------


def test_unknown_service(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(api(service="nope", method="current"))
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].config", "unknown service/operation nope.current")


def test_unknown_operation(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(api(service="weatherapi", operation="tomorrow"))
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].config", "weatherapi.tomorrow")


def test_services_are_not_checked_without_a_registry(tmp_path: Path, prompts_dir: Path) -> None:
    path = write_json(tmp_path, "wf.json", workflow(api(service="nope", method="x")))
    loaded = load_definition_file(path, prompts_dir=prompts_dir, has_service=None)
    assert loaded.definition.steps[0].config.service == "nope"  # type: ignore[union-attr]


def test_unknown_transform_operation(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow({"id": "t", "type": "transform", "config": {"operation": "fiter"}})
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].config.operation", "unknown transform operation 'fiter'")


def test_bad_regex_in_transform(tmp_path: Path, prompts_dir: Path) -> None:
    step = {"id": "t", "type": "transform", "config": {"operation": "regex_extract"}}
    step["config"]["config"] = {"pattern": "(["}
    problems = problems_of(tmp_path, prompts_dir, workflow(step))
    assert_problem(problems, "$.steps[0].config.config.pattern", "regular expression")


def test_bad_filter_condition_in_transform(tmp_path: Path, prompts_dir: Path) -> None:
    step = {"id": "t", "type": "transform", "config": {"operation": "filter"}}
    step["config"]["config"] = {"condition": "item.x >"}
    problems = problems_of(tmp_path, prompts_dir, workflow(step))
    assert_problem(problems, "$.steps[0].config.config.condition", "end of condition")


def test_bad_when_syntax(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(transform("a"), {**transform("b"), "when": "foo(1)"})
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[1].when", "'('")


def test_when_referencing_a_later_step(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow({**transform("a"), "when": "${steps.b.status} == 'completed'"}, transform("b"))
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].when", "runs later")


def test_when_with_unknown_root(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow({**transform("a"), "when": "item.x > 1"})
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].when", "unknown reference root 'item'")


# --- prompts ---------------------------------------------------------------------------------


def test_missing_prompt_template(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(llm(prompt_template="wf/absent.md"))
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].config.prompt_template", "wf/absent.md", "not found")


def test_cyclic_prompt_include(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(llm(prompt_template="wf/cy1.md"))
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].config.prompt_template", "cyclic", "wf/cy1.md → wf/cy2.md")


@pytest.mark.parametrize("template", ["../secret.txt", "wf/escape.md", "/etc/passwd"])
def test_prompt_outside_prompts_dir(tmp_path: Path, prompts_dir: Path, template: str) -> None:
    data = workflow(llm(prompt_template=template))
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].config.prompt_template", "PROMPTS_DIR")


def test_system_prompt_template_is_checked_too(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(
        llm(prompt_text="hi", system_prompt_template="wf/missing-system.md"),
    )
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].config.system_prompt_template", "missing-system.md")


def test_prompt_template_placeholder_neither_variable_nor_reference(
    tmp_path: Path, prompts_dir: Path
) -> None:
    data = workflow(llm(prompt_template="wf/mystery.md", variables={"name": "x"}))
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(
        problems, "$.steps[0].config.prompt_template", "wf/mystery.md", "${mystery}", "neither"
    )


def test_prompt_text_placeholder_neither_variable_nor_reference(
    tmp_path: Path, prompts_dir: Path
) -> None:
    data = workflow(llm(prompt_text="Hi ${who} ${input.x}"))
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].config.prompt_text", "${who}", "neither")


def test_prompt_reference_to_unknown_or_later_step(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(
        llm("l1", prompt_text="Use ${steps.ghost.output}"),
        llm("l2", prompt_text="x", system_prompt="${steps.l3.output}"),
        llm("l3", prompt_template="wf/later.md"),
    )
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].config.prompt_text", "'ghost'", "does not exist")
    assert_problem(problems, "$.steps[1].config.system_prompt", "'l3'", "runs later")
    assert_problem(problems, "$.steps[2].config.prompt_template", "'after'", "does not exist")


def test_prompt_variable_references_are_checked(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(llm(prompt_template="wf/ok.md", variables={"name": "${steps.nope.output}"}))
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.steps[0].config.variables", "'nope'")


@pytest.mark.parametrize(
    "config",
    [
        {"prompt_text": "x", "prompt_template": "wf/ok.md"},
        {},
    ],
)
def test_llm_needs_exactly_one_prompt(
    tmp_path: Path, prompts_dir: Path, config: dict[str, Any]
) -> None:
    problems = problems_of(tmp_path, prompts_dir, workflow(llm(**config)))
    assert_problem(problems, "$.steps[0].config", "exactly one of prompt_template or prompt_text")


def test_prompt_templates_are_expanded_into_the_loaded_definition(
    tmp_path: Path, prompts_dir: Path
) -> None:
    data = workflow(llm(prompt_template="wf/ok.md", variables={"name": "${input.who}"}))
    loaded = load(tmp_path, prompts_dir, data)
    assert loaded.prompts == {"wf/ok.md": "Hello ${name}. Be brief."}


# --- field values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry", "field"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": "three"}, "max_retries"),
        ({"initial_delay": 0}, "initial_delay"),
        ({"max_delay": -5}, "max_delay"),
        ({"exponential_base": 0.5}, "exponential_base"),
    ],
)
def test_bad_retry_values(
    tmp_path: Path, prompts_dir: Path, retry: dict[str, Any], field: str
) -> None:
    data = workflow(transform("a"), {**transform("b"), "retry": retry})
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, f"$.steps[1].retry.{field}")


@pytest.mark.parametrize("version", ["1.x", "v1.0.0", "1.0", "1.0.0.0", ""])
def test_bad_version_string(tmp_path: Path, prompts_dir: Path, version: str) -> None:
    problems = problems_of(tmp_path, prompts_dir, workflow(transform(), version=version))
    assert_problem(problems, "$.version", "pattern")


def test_bad_error_mode(tmp_path: Path, prompts_dir: Path) -> None:
    problems = problems_of(tmp_path, prompts_dir, workflow({**transform(), "error_mode": "boom"}))
    assert_problem(problems, "$.steps[0].error_mode", "'fail'")


def test_bad_llm_config_value(tmp_path: Path, prompts_dir: Path) -> None:
    problems = problems_of(tmp_path, prompts_dir, workflow(llm(prompt_text="x", temperature=5)))
    assert_problem(problems, "$.steps[0].config.temperature", "less than or equal to 2")


def test_union_member_tags_stay_out_of_the_path(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(llm(prompt_text="x", response_format="xml"))
    problems = problems_of(tmp_path, prompts_dir, data)
    assert {p.path for p in problems} == {"$.steps[0].config.response_format"}


def test_bad_input_spec(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(transform(), inputs=[{"name": "ok"}, {"name": "x", "type": "weird"}])
    problems = problems_of(tmp_path, prompts_dir, data)
    assert_problem(problems, "$.inputs[1].type")


# --- warnings and aliases --------------------------------------------------------------------------


def test_unknown_fields_are_kept_and_warned(tmp_path: Path, prompts_dir: Path) -> None:
    step = {**transform("a", shade="blue"), "colour": "red"}
    loaded = load(tmp_path, prompts_dir, workflow(step, owner="team-x"))
    paths = {w.path for w in loaded.warnings}
    assert paths == {"$.owner", "$.steps[0].colour", "$.steps[0].config.shade"}
    assert all(w.source == "wf.json" and "unknown field" in w.message for w in loaded.warnings)
    # Kept, not dropped: they survive into the snapshot.
    body = loaded.snapshot().definition
    assert body["owner"] == "team-x"
    assert body["steps"][0]["colour"] == "red"


def test_undeclared_input_reference_is_a_warning(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(transform("a", input="${input.typo}"), inputs=[{"name": "topic"}])
    loaded = load(tmp_path, prompts_dir, data)
    assert [(w.path, "'typo'" in w.message) for w in loaded.warnings] == [
        ("$.steps[0].config.input", True)
    ]


def test_aliases_normalise(tmp_path: Path, prompts_dir: Path) -> None:
    data = {
        "name": "wf",
        "timeout": 30,
        "outputs": "${steps.a.output}",
        "inputs": [{"name": "n", "type": "int"}],
        "steps": [
            api(
                "a",
                service="weatherapi",
                method="current",
                params={"q": "${input.n}"},
                error_mode="continue",
            ),
            api("b", service="google_places", method="nearby_search", config={"radius": 5}),
            {**llm("c", prompt="Say hi", timeout=12), "outputs": "text"},
        ],
    }
    loaded = load(tmp_path, prompts_dir, data)
    assert loaded.warnings == []
    defn = loaded.definition
    a, b, c = defn.steps
    assert defn.timeout_seconds == 30
    assert defn.output == "${steps.a.output}"
    assert defn.inputs[0].type == "integer"
    assert a.config.operation == "current"  # type: ignore[union-attr]
    assert a.config.parameters == {"q": "${input.n}"}  # type: ignore[union-attr]
    assert defn.step_error_mode(a) == "continue"
    assert defn.step_error_mode(b) == "fail"
    assert b.config.parameters == {"radius": 5}  # type: ignore[union-attr]
    assert c.config.prompt_text == "Say hi"  # type: ignore[union-attr]
    assert c.config.timeout == 12  # type: ignore[union-attr]
    assert c.outputs == ["text"]
    # The canonical names are what the snapshot carries.
    body = loaded.snapshot().definition
    assert "timeout" not in body and body["timeout_seconds"] == 30
    assert "outputs" not in body and body["output"] == "${steps.a.output}"
    assert body["steps"][0]["config"]["operation"] == "current"
    assert "method" not in body["steps"][0]["config"]


def test_step_error_mode_precedence(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(
        {**transform("a", error_mode="continue"), "error_mode": "fail"},
        transform("b"),
        default_error_mode="retry",
    )
    defn = load(tmp_path, prompts_dir, data).definition
    assert defn.step_error_mode(defn.steps[0]) == "fail"  # the step's own field wins
    assert defn.step_error_mode(defn.steps[1]) == "retry"


# --- shipped files ----------------------------------------------------------------------------------


def test_seed_file_loads_unmodified() -> None:
    if not SEED_FILE.exists():
        pytest.skip(f"{SEED_FILE} is not beside this checkout")
    loaded = load_definition_file(
        SEED_FILE, prompts_dir=DEFAULT_PROMPTS_DIR, has_service=SERVICES.has
    )
    assert (loaded.name, loaded.version) == ("emergency_contacts", "2.0.0")
    assert [w for w in loaded.warnings if "unknown field" in w.message] == []


def test_every_shipped_definition_loads() -> None:
    registry = load_registry(
        DEFAULT_WORKFLOW_DEFS_DIR, prompts_dir=DEFAULT_PROMPTS_DIR, has_service=SERVICES.has
    )
    shipped = sorted(
        p.name
        for p in DEFAULT_WORKFLOW_DEFS_DIR.glob("*.json")
        if p.name not in NON_DEFINITION_FILES
    )
    assert sorted(d.source for d in registry.all()) == shipped
    for loaded in registry.all():
        snap = loaded.snapshot()
        again = WorkflowDefinition.model_validate(snap.definition)
        assert again == loaded.definition, loaded.source
        for text in snap.prompts.values():
            assert "{{include" not in text


# --- registry --------------------------------------------------------------------------------------


def test_version_ordering() -> None:
    assert version_key("1.10.0") > version_key("1.9.0")
    assert version_key("2.0.0") > version_key("2.0.0-rc1")
    assert version_key("2.0.0-rc2") > version_key("2.0.0-rc1")
    assert version_key("10.0.0") > version_key("9.99.99")


def test_registry_default_is_highest_version(tmp_path: Path, prompts_dir: Path) -> None:
    defs = tmp_path / "defs"
    defs.mkdir()
    for i, version in enumerate(["1.9.0", "1.10.0", "1.2.3"]):
        write_json(defs, f"wf_{i}.json", workflow(transform(), version=version))
    write_json(defs, "other.json", {**workflow(transform()), "name": "other"})
    (defs / "services.json").write_text("{not a definition", encoding="utf-8")  # skipped
    registry = load_registry(defs, prompts_dir=prompts_dir, has_service=SERVICES.has)
    assert registry.names() == ["other", "wf"]
    assert registry.versions("wf") == ["1.10.0", "1.9.0", "1.2.3"]
    default = registry.get("wf")
    assert default is not None and default.version == "1.10.0"
    pinned = registry.get("wf", "1.9.0")
    assert pinned is not None and pinned.version == "1.9.0" and pinned.source == "wf_0.json"
    assert registry.get("wf", "3.0.0") is None
    assert registry.get("nope") is None


def test_release_beats_its_release_candidate(tmp_path: Path, prompts_dir: Path) -> None:
    defs = tmp_path / "defs"
    defs.mkdir()
    for i, version in enumerate(["2.0.0-rc1", "2.0.0", "1.9.0"]):
        write_json(defs, f"wf_{i}.json", workflow(transform(), version=version))
    registry = load_registry(defs, prompts_dir=prompts_dir)
    default = registry.get("wf")
    assert default is not None and default.version == "2.0.0"


def test_registry_rejects_duplicate_name_and_version(tmp_path: Path, prompts_dir: Path) -> None:
    defs = tmp_path / "defs"
    defs.mkdir()
    write_json(defs, "a.json", workflow(transform()))
    write_json(defs, "b.json", workflow(transform("other")))
    with pytest.raises(DefinitionError) as exc:
        load_registry(defs, prompts_dir=prompts_dir)
    (problem,) = exc.value.problems
    assert (problem.source, problem.path) == ("b.json", "$.version")
    assert "wf 1.0.0 is also defined in a.json" in problem.message


def test_registry_reports_problems_of_every_file(tmp_path: Path, prompts_dir: Path) -> None:
    defs = tmp_path / "defs"
    defs.mkdir()
    write_json(defs, "bad1.json", workflow(transform("a", input="${steps.x.output}")))
    write_json(defs, "bad2.json", {**workflow(transform()), "name": "two", "version": "x"})
    write_json(defs, "good.json", {**workflow(transform()), "name": "fine"})
    with pytest.raises(DefinitionError) as exc:
        load_registry(defs, prompts_dir=prompts_dir)
    assert {(p.source, p.path) for p in exc.value.problems} == {
        ("bad1.json", "$.steps[0].config.input"),
        ("bad2.json", "$.version"),
    }


# --- snapshot ----------------------------------------------------------------------------------------


def test_snapshot_hash_is_stable_and_tracks_prompts(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(llm(prompt_template="wf/ok.md", variables={"name": "${input.who}"}))
    first = load(tmp_path, prompts_dir, data).snapshot()
    second = load(tmp_path, prompts_dir, data).snapshot()
    assert first.content_hash == second.content_hash
    assert first.content_hash.startswith("sha256:") and len(first.content_hash) == 7 + 64
    assert first.prompts == {"wf/ok.md": "Hello ${name}. Be brief."}

    # An included file changes: the resolved text and the hash change with it.
    (prompts_dir / "common" / "style.md").write_text("Be thorough.", encoding="utf-8")
    changed = load(tmp_path, prompts_dir, data).snapshot()
    assert changed.prompts == {"wf/ok.md": "Hello ${name}. Be thorough."}
    assert changed.content_hash != first.content_hash

    # So does the definition itself.
    other = load(tmp_path, prompts_dir, {**data, "description": "d"}).snapshot()
    assert other.content_hash != changed.content_hash


def test_snapshot_round_trips(tmp_path: Path, prompts_dir: Path) -> None:
    data = workflow(
        api("a", service="weatherapi", method="current", params={"q": "x", "aqi": None}),
        llm("b", prompt_template="wf/ok.md", variables={"name": "${steps.a.data}"}),
        {"id": "c", "type": "http", "config": {"url": "https://example.com", "json": {"k": 1}}},
        {**transform("d", input="${steps.b.output}"), "retry": {"max_retries": 0}},
        inputs=[{"name": "n", "type": "number", "default": 1}],
        input_schema={"type": "object"},
        outputs={"v": "${steps.d.output}"},
        timeout=99,
    )
    loaded = load(tmp_path, prompts_dir, data)
    snap = loaded.snapshot()
    assert (snap.name, snap.version) == ("wf", "1.0.0")
    again = WorkflowDefinition.model_validate(snap.definition)
    assert again == loaded.definition
    assert snap.definition["steps"][2]["config"]["json"] == {"k": 1}
    assert snap.definition["steps"][0]["config"]["parameters"] == {"q": "x", "aqi": None}
    # Validating the snapshot again gives the same snapshot (and hash).
    reloaded = LoadedDefinition(again, loaded.source, loaded.prompts).snapshot()
    assert reloaded.content_hash == snap.content_hash
