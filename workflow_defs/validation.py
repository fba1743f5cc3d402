"""Whole-definition checks that pydantic alone can't do, with JSON paths.

Kinds of error caught here: duplicate step ids, references to unknown or later steps, unknown
reference roots, unknown service/operation, bad transform config, bad condition syntax, prompt
templates that are missing, cyclic, outside PROMPTS_DIR or use placeholders that can never
resolve. Each problem is reported as (json_path, message).

Warnings (the definition still loads): references to undeclared inputs, and references to an
output key that a step whose output shape is known (llm, external_api, http, webhook) can
never produce, such as `${steps.plan.llm_usgae}`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workflow_defs.expressions import ExpressionError, compile_condition
from workflow_defs.prompts import PromptError, check_placeholders, expand_includes, placeholders
from workflow_defs.references import (
    ROOTS,
    ReferenceSyntaxError,
    find_references,
    format_path,
    parse_path,
)
from workflow_defs.schema import (
    LOOP_VARIABLES,
    ApprovalStep,
    ExternalApiStep,
    ForeachStep,
    LlmStep,
    LoopStep,
    SwitchStep,
    TransformStep,
    WaitForEventStep,
    WaitStep,
    WorkflowDefinition,
)
from workflow_defs.transforms import check_transform_config
from workflow_defs.tree import block_ids, exported_ids, walk_steps

Problem = tuple[str, str]
# Transform config keys that hold their own template/condition language, not references.
TRANSFORM_UNRESOLVED_KEYS = frozenset({"template", "condition", "expression"})


# `${steps.<id>.…}` also reaches these, whatever the step's output (see step_view in the worker).
STEP_VIEW_KEYS = ("output", "status", "error")
# Result fields the interpreter keeps out of a step's output (they go to the step record).
RECORD_ONLY_FIELDS = frozenset({"attempt", "warnings"})


def transform_resolvable_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in TRANSFORM_UNRESOLVED_KEYS}


@functools.cache
def activity_output_fields() -> dict[str, frozenset[str]]:
    """Output keys of each activity step type, read off the activities' result models."""
    # Imported here: the interpreter imports this module into the workflow sandbox and only
    # ever needs transform_resolvable_config from it.
    from activities.external_api_models import ExternalApiOutput
    from activities.http_step_models import HttpRequestOutput
    from activities.llm.models import LlmCallOutput
    from activities.webhook_step_models import WebhookSendOutput

    models: dict[str, Any] = {
        "llm": LlmCallOutput,
        "external_api": ExternalApiOutput,
        "http": HttpRequestOutput,
        "webhook": WebhookSendOutput,
    }
    return {
        kind: frozenset({*model.model_fields, *model.model_computed_fields} - RECORD_ONLY_FIELDS)
        for kind, model in models.items()
    }


def step_output_keys(step: Any) -> frozenset[str] | None:
    """Every key `${steps.<id>.<key>}` can name for this step; None when the shape is unknown
    (a transform's output depends on its data)."""
    fields = activity_output_fields().get(step.type)
    if fields is None:
        return None
    keys = {*fields, *STEP_VIEW_KEYS, *(step.outputs or ())}
    if isinstance(step.default, dict):
        keys.update(step.default)  # what the step yields when it fails under `continue`
    return frozenset(keys)


def check_definition(
    defn: WorkflowDefinition,
    *,
    prompts_dir: Path,
    has_service: Callable[[str, str], bool] | None,
) -> tuple[list[Problem], list[Problem], dict[str, str]]:
    """Returns (errors, warnings, expanded prompt templates by relative path)."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    prompts: dict[str, str] = {}
    input_names = {spec.name for spec in defn.inputs}
    schema_props = set((defn.input_schema or {}).get("properties", {}) or {})
    declared_inputs = input_names | schema_props

    def check_refs(value: Any, where: str, earlier: dict[str, Any]) -> None:
        try:
            refs = find_references(value)
        except ReferenceSyntaxError as exc:
            errors.append((where, str(exc)))
            return
        for raw, path in refs:
            check_path(raw, path, where, earlier)

    def check_path(raw: str, path: list[Any], where: str, earlier: dict[str, Any]) -> None:
        root = path[0]
        if root in block_variables:
            return
        if root not in ROOTS:
            roots = ", ".join([*ROOTS, *sorted(block_variables)])
            errors.append((where, f"{raw}: unknown reference root {root!r} (use {roots})"))
        elif root == "steps":
            if len(path) < 2 or not isinstance(path[1], str):
                errors.append((where, f"{raw}: name a step, e.g. ${{steps.<id>.output}}"))
            elif path[1] not in earlier:
                errors.append((where, f"{raw}: step {path[1]!r} {unreachable(path[1])}"))
            elif len(path) > 2 and isinstance(path[2], str):
                check_output_key(earlier[path[1]], path[2], where)
        elif (
            root == "input" and declared_inputs and len(path) > 1 and path[1] not in declared_inputs
        ):
            warnings.append((where, f"{raw}: {path[1]!r} is not a declared input"))

    def check_output_key(step: Any, key: str, where: str) -> None:
        known = step_output_keys(step)
        if known is None or key in known:
            return
        warning = (
            where,
            f"steps.{step.id}.{key}: {step.type} step '{step.id}' has no output key '{key}'; "
            f"known: {', '.join(sorted(known))}",
        )
        if warning not in warnings:
            warnings.append(warning)

    def check_prompt_refs(
        text: str, variables: dict[str, Any], where: str, earlier: dict[str, Any]
    ) -> None:
        # Placeholders that are references (not variables) must name earlier steps too.
        for raw in placeholders(text):
            try:
                path = parse_path(raw)
            except ReferenceSyntaxError:
                continue  # reported by check_placeholders
            if path[0] in ROOTS and path[0] not in variables:
                check_path(f"${{{raw}}}", path, where, earlier)

    def load_prompt(relative: str, where: str) -> str | None:
        if relative in prompts:
            return prompts[relative]  # several steps may share a template: expand it once
        try:
            text = expand_includes(prompts_dir, relative)
        except PromptError as exc:
            errors.append((where, str(exc)))
            return None
        prompts[relative] = text
        return text

    located = list(walk_steps(defn.steps))
    by_id: dict[str, Any] = {}
    for loc in located:
        by_id.setdefault(loc.step.id, loc.step)
    all_ids = set(by_id)
    holder = {loc.step.id: loc.parent for loc in located if loc.parent is not None}

    def unreachable(step_id: str) -> str:
        if step_id not in all_ids:
            return "does not exist"
        if step_id in holder:
            return (
                f"is inside {holder[step_id]!r}, whose inner steps are only visible within it; "
                f"use ${{steps.{holder[step_id]}.output}}"
            )
        return "runs later"

    first_at: dict[str, str] = {}
    block_variables: frozenset[str] = frozenset()

    def check_condition(text: str, where: str, earlier: dict[str, Any]) -> None:
        try:
            for path in compile_condition(text).paths():
                # Quote the path, not the condition: a long one quoted per path adds up.
                check_path(f"${{{format_path(path)}}}", path, where, earlier)
        except ExpressionError as exc:
            errors.append((where, str(exc)))

    for loc in located:
        step, base = loc.step, loc.json_path
        block_variables = loc.variables
        earlier = {step_id: by_id[step_id] for step_id in loc.visible}
        if step.id in first_at:
            errors.append(
                (f"{base}.id", f"duplicate step id {step.id!r} (first at {first_at[step.id]})")
            )
        first_at.setdefault(step.id, base)
        if step.when is not None:
            check_condition(step.when, f"{base}.when", earlier)
        if isinstance(step, LlmStep):
            cfg = step.config
            # A foreach's item/index names read in a prompt like variables of the step.
            known_names = {**dict.fromkeys(block_variables), **cfg.variables}
            check_refs(cfg.variables, f"{base}.config.variables", earlier)
            for field in ("prompt_template", "system_prompt_template"):
                relative = getattr(cfg, field)
                if relative is not None:
                    text = load_prompt(relative, f"{base}.config.{field}")
                    if text is not None:
                        for msg in check_placeholders(text, known_names):
                            errors.append((f"{base}.config.{field}", f"{relative}: {msg}"))
                        check_prompt_refs(text, cfg.variables, f"{base}.config.{field}", earlier)
            for field in ("prompt_text", "system_prompt"):
                text = getattr(cfg, field)
                if text is not None:
                    for msg in check_placeholders(text, known_names):
                        errors.append((f"{base}.config.{field}", msg))
                    check_prompt_refs(text, cfg.variables, f"{base}.config.{field}", earlier)
        elif isinstance(step, ExternalApiStep):
            cfg_api = step.config
            if has_service is not None and not has_service(cfg_api.service, cfg_api.operation):
                errors.append(
                    (
                        f"{base}.config",
                        f"unknown service/operation {cfg_api.service}.{cfg_api.operation}",
                    )
                )
            check_refs(cfg_api.parameters, f"{base}.config.parameters", earlier)
        elif isinstance(step, TransformStep):
            cfg_t = step.config
            for rel, msg in check_transform_config(cfg_t.operation, cfg_t.config):
                errors.append(
                    (
                        f"{base}.config.{rel}"
                        if rel != "operation"
                        else f"{base}.config.operation",
                        msg,
                    )
                )
            check_refs(cfg_t.input, f"{base}.config.input", earlier)
            check_refs(transform_resolvable_config(cfg_t.config), f"{base}.config.config", earlier)
        elif isinstance(step, ForeachStep):
            cfg_f = step.config
            check_refs(cfg_f.items, f"{base}.config.items", earlier)
            check_refs(cfg_f.max_concurrency, f"{base}.config.max_concurrency", earlier)
            if cfg_f.output is not None:
                # Evaluated per item, after the item's steps ran.
                block_variables = loc.variables | {cfg_f.as_, cfg_f.index_as}
                inner = {i: by_id[i] for i in block_ids(step)}
                check_refs(cfg_f.output, f"{base}.config.output", {**earlier, **inner})
        elif isinstance(step, SwitchStep):
            for i, case in enumerate(step.config.cases):
                check_condition(case.when, f"{base}.config.cases[{i}].when", earlier)
        elif isinstance(step, LoopStep):
            # `until` is read after each iteration: it sees that iteration's steps too.
            block_variables = loc.variables | set(LOOP_VARIABLES)
            inner = {i: by_id[i] for i in block_ids(step)}
            check_condition(step.config.until, f"{base}.config.until", {**earlier, **inner})
        elif isinstance(step, WaitStep):
            check_refs(step.config.seconds, f"{base}.config.seconds", earlier)
            check_refs(step.config.until, f"{base}.config.until", earlier)
        elif isinstance(step, ApprovalStep | WaitForEventStep):
            if isinstance(step, ApprovalStep):
                check_refs(step.config.prompt, f"{base}.config.prompt", earlier)
            problem = json_schema_problem(step.config.schema_)
            if problem:
                errors.append((f"{base}.config.schema", problem))
        elif not step.blocks():
            check_refs(step.config.model_dump(by_alias=True), f"{base}.config", earlier)
    block_variables = frozenset()
    earlier = {i: by_id[i] for i in top_level_visible(defn.steps)}
    if defn.output is not None:
        check_refs(defn.output, "$.output", earlier)
    return errors, warnings, prompts


def json_schema_problem(schema: dict[str, Any] | None) -> str | None:
    if schema is None:
        return None
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"not a valid JSON Schema: {exc.message}"
    return None


def top_level_visible(steps: list[Any]) -> set[str]:
    """What the definition's `output` may reference: every top-level step and what a parallel
    exports."""
    visible: set[str] = set()
    for step in steps:
        visible.add(step.id)
        visible |= exported_ids(step)
    return visible


def extra_field_warnings(value: Any, path: str = "$") -> list[Problem]:
    """Unknown fields kept by extra='allow' anywhere in the model tree."""
    from pydantic import BaseModel

    found: list[Problem] = []
    if isinstance(value, BaseModel):
        for key in value.model_extra or {}:
            found.append((f"{path}.{key}", "unknown field kept as is (not used by llmflow)"))
        for name in type(value).model_fields:
            found.extend(extra_field_warnings(getattr(value, name), f"{path}.{name}"))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(extra_field_warnings(item, f"{path}[{i}]"))
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, BaseModel | list):
                found.extend(extra_field_warnings(item, f"{path}.{key}"))
    return found
