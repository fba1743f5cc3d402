"""A reference to an output key no step can produce (`${steps.plan.llm_usgae}`) is a load-time
warning naming the step's known keys, never a silent null at run time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.cli import main as cli
from core.paths import DEFAULT_PROMPTS_DIR, DEFAULT_WORKFLOW_DEFS_DIR
from core.step_outputs import ExternalApiOutput, HttpRequestOutput, LlmCallOutput, WebhookSendOutput
from workflow_defs.loader import LoadedDefinition, Problem, load_definition_file, load_registry
from workflow_defs.services import load_services
from workflow_defs.validation import activity_output_fields

SERVICES = load_services(DEFAULT_WORKFLOW_DEFS_DIR / "services.json")
LLM_KNOWN = (
    "content, cost_usd, data, duration_ms, error, finish_reason, llm_usage, model, output, "
    "provider, status, usage"
)


def llm(step_id: str = "plan", **extra: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "llm",
        "config": {"model": "openai/gpt-4o-mini", "provider": "mock", "prompt_text": "Plan."},
        **extra,
    }


def join(step_id: str, source: str) -> dict[str, Any]:
    return {"id": step_id, "type": "transform", "config": {"operation": "join", "input": source}}


def weather(step_id: str = "weather", **extra: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "external_api",
        "config": {"service": "weatherapi", "operation": "current", "parameters": {"q": "Oslo"}},
        **extra,
    }


def load(tmp_path: Path, *steps: dict[str, Any], **fields: Any) -> LoadedDefinition:
    path = tmp_path / "wf.json"
    data = {"name": "wf", "version": "1.0.0", "steps": list(steps), **fields}
    path.write_text(json.dumps(data), encoding="utf-8")
    return load_definition_file(path, prompts_dir=tmp_path, has_service=SERVICES.has)


def key_warnings(loaded: LoadedDefinition) -> list[Problem]:
    return [w for w in loaded.warnings if "has no output key" in w.message]


def test_typo_in_an_llm_output_key_warns_with_the_known_keys(tmp_path: Path) -> None:
    loaded = load(tmp_path, llm(), join("tokens", "${steps.plan.llm_usgae}"))
    assert [(w.source, w.path, w.message) for w in key_warnings(loaded)] == [
        (
            "wf.json",
            "$.steps[1].config.input",
            "steps.plan.llm_usgae: llm step 'plan' has no output key 'llm_usgae'; "
            f"known: {LLM_KNOWN}",
        )
    ]


def test_real_llm_keys_and_deeper_paths_pass(tmp_path: Path) -> None:
    refs = [
        "${steps.plan.llm_usage}",
        "${steps.plan.llm_usage.total_tokens}",
        "${steps.plan.content}",
        "${steps.plan.data.title}",
        "${steps.plan.usage.input_tokens}",
        "${steps.plan.output.content}",
        "${steps.plan.status}",
        "${steps.plan.error}",
        "${steps.plan.text}",  # an `outputs` name
        "${steps.plan}",
    ]
    loaded = load(tmp_path, llm(outputs=["text"]), output={str(i): r for i, r in enumerate(refs)})
    assert key_warnings(loaded) == []


@pytest.mark.parametrize(
    ("where", "fields"),
    [
        ("output", {"output": "${steps.plan.cost}"}),
        ("condition", {}),
        ("prompt", {}),
    ],
)
def test_every_place_a_reference_can_stand_is_checked(
    tmp_path: Path, where: str, fields: dict[str, Any]
) -> None:
    second = llm("second", when="steps.plan.cost > 1")
    if where == "prompt":
        second = llm("second")
        second["config"]["prompt_text"] = "Costs so far: ${steps.plan.cost}"
    steps = [llm(), second] if where != "output" else [llm()]
    paths = [w.path for w in key_warnings(load(tmp_path, *steps, **fields))]
    assert (
        paths
        == {
            "output": ["$.output"],
            "condition": ["$.steps[1].when"],
            "prompt": ["$.steps[1].config.prompt_text"],
        }[where]
    )


def test_external_api_http_and_webhook_steps_are_checked(tmp_path: Path) -> None:
    http = {"id": "crm", "type": "http", "config": {"url": "https://crm.example/x"}}
    hook = {"id": "notify", "type": "webhook", "config": {"url": "https://hooks.example/x"}}
    loaded = load(
        tmp_path,
        weather(),
        http,
        hook,
        output={
            "ok": ["${steps.weather.data}", "${steps.weather.cached}", "${steps.crm.headers}"],
            "ok2": ["${steps.notify.delivery_id}", "${steps.crm.status_code}"],
            "bad": ["${steps.weather.results}", "${steps.crm.body}", "${steps.notify.content}"],
        },
    )
    messages = [w.message for w in key_warnings(loaded)]
    assert messages == [
        "steps.weather.results: external_api step 'weather' has no output key 'results'; "
        "known: cached, data, error, operation, output, service, status, status_code",
        "steps.crm.body: http step 'crm' has no output key 'body'; "
        "known: data, error, headers, output, status, status_code",
        "steps.notify.content: webhook step 'notify' has no output key 'content'; "
        "known: delivery_id, duration_ms, error, output, response_snippet, status, status_code",
    ]


def test_keys_of_a_default_output_are_known(tmp_path: Path) -> None:
    # Under `error_mode: continue` the step's output becomes its `default`.
    step = weather(error_mode="continue", default={"data": None, "fallback": True})
    loaded = load(tmp_path, step, output="${steps.weather.fallback}")
    assert key_warnings(loaded) == []


def test_transform_outputs_are_never_guessed(tmp_path: Path) -> None:
    loaded = load(tmp_path, join("t", "${input.xs}"), output="${steps.t.anything.at.all}")
    assert key_warnings(loaded) == []


def test_the_same_typo_twice_in_one_place_warns_once(tmp_path: Path) -> None:
    loaded = load(tmp_path, llm(), output="${steps.plan.txt} and ${steps.plan.txt}")
    assert len(key_warnings(loaded)) == 1


def test_known_fields_follow_the_activity_result_models() -> None:
    fields = activity_output_fields()
    assert fields["llm"] >= {"llm_usage", "content", "data", "usage", "model", "cost_usd"}
    assert fields["external_api"] == {"data", "service", "operation", "cached", "status_code"}
    for kind, model in [
        ("llm", LlmCallOutput),
        ("external_api", ExternalApiOutput),
        ("http", HttpRequestOutput),
        ("webhook", WebhookSendOutput),
    ]:
        assert "attempt" not in fields[kind]  # kept in the step record, not the output
        assert fields[kind] <= {*model.model_fields, *model.model_computed_fields}


def test_shipped_definitions_have_no_key_warnings() -> None:
    registry = load_registry(
        DEFAULT_WORKFLOW_DEFS_DIR, prompts_dir=DEFAULT_PROMPTS_DIR, has_service=SERVICES.has
    )
    assert [w for w in registry.warnings() if "has no output key" in w.message] == []


def test_llmflow_validate_prints_the_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "typo.json"
    data = {"name": "typo", "steps": [llm(), join("t", "${steps.plan.llm_usgae.total_tokens}")]}
    path.write_text(json.dumps(data), encoding="utf-8")
    assert cli.main(["validate", str(path)]) == 0  # a warning, not an error
    out = capsys.readouterr().out
    assert f"✓ {path}" in out
    assert (
        "warning $.steps[1].config.input: steps.plan.llm_usgae: llm step 'plan' has no output "
        f"key 'llm_usgae'; known: {LLM_KNOWN}"
    ) in out
