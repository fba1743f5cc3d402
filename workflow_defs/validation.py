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

from core.step_outputs import (
    ExternalApiOutput,
    HttpRequestOutput,
    LlmCallOutput,
    WebhookSendOutput,
)
from workflow_defs.expressions import ExpressionError, compile_condition
from workflow_defs.prompts import PromptError, check_placeholders, expand_includes, placeholders
from workflow_defs.references import (
    CONTEXT_KEYS,
    ROOTS,
    ReferenceSyntaxError,
    find_references,
    format_path,
    parse_path,
)
from workflow_defs.schema import WorkflowDefinition
from workflow_defs.transforms import check_transform_config
from workflow_defs.tree import Located, block_ids, exported_ids, walk_steps

Problem = tuple[str, str]


# `${steps.<id>.…}` also reaches these, whatever the step's output (see step_view in the worker).
STEP_VIEW_KEYS = ("output", "status", "error")
# Result fields the interpreter keeps out of a step's output (they go to the step record).
RECORD_ONLY_FIELDS = frozenset({"attempt", "warnings"})


@functools.cache
def activity_output_fields() -> dict[str, frozenset[str]]:
    """Output keys of each activity step type, read off the activities' result models."""
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
    checker = _DefinitionChecker(defn, prompts_dir, has_service)
    first_at: dict[str, str] = {}
    for loc in checker.located:
        step, base = loc.step, loc.json_path
        if step.id in first_at:
            checker.errors.append(
                (f"{base}.id", f"duplicate step id {step.id!r} (first at {first_at[step.id]})")
            )
        first_at.setdefault(step.id, base)
        at = _StepScope(checker, loc)
        if step.when is not None:
            at.condition(step.when, "when")
        step.check(at)
    if defn.output is not None:
        top = {i: checker.by_id[i] for i in top_level_visible(defn.steps)}
        checker.check_refs(defn.output, "$.output", top, frozenset())
    return checker.errors, checker.warnings, checker.prompts


class _DefinitionChecker:
    """The definition-wide state of one check: what exists, where it sits, what was found."""

    def __init__(
        self,
        defn: WorkflowDefinition,
        prompts_dir: Path,
        has_service: Callable[[str, str], bool] | None,
    ) -> None:
        self.prompts_dir = prompts_dir
        self.has_service = has_service
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.prompts: dict[str, str] = {}
        schema_props = set((defn.input_schema or {}).get("properties", {}) or {})
        self.declared_inputs = {spec.name for spec in defn.inputs} | schema_props
        self.located = list(walk_steps(defn.steps))
        self.by_id: dict[str, Any] = {}
        for loc in self.located:
            self.by_id.setdefault(loc.step.id, loc.step)
        self.holder = {loc.step.id: loc.parent for loc in self.located if loc.parent is not None}

    def check_refs(
        self, value: Any, where: str, earlier: dict[str, Any], names: frozenset[str]
    ) -> None:
        try:
            refs = find_references(value)
        except ReferenceSyntaxError as exc:
            self.errors.append((where, str(exc)))
            return
        for raw, path in refs:
            self.check_path(raw, path, where, earlier, names)

    def check_path(
        self,
        raw: str,
        path: list[Any],
        where: str,
        earlier: dict[str, Any],
        names: frozenset[str],
    ) -> None:
        root = path[0]
        if root in names:
            return
        if root not in ROOTS:
            roots = ", ".join([*ROOTS, *sorted(names)])
            self.errors.append((where, f"{raw}: unknown reference root {root!r} (use {roots})"))
        elif root == "context":
            if len(path) > 1 and path[1] not in CONTEXT_KEYS:
                known = ", ".join(CONTEXT_KEYS)
                self.errors.append((where, f"{raw}: unknown context key {path[1]!r} (use {known})"))
        elif root == "steps":
            if len(path) < 2 or not isinstance(path[1], str):
                self.errors.append((where, f"{raw}: name a step, e.g. ${{steps.<id>.output}}"))
            elif path[1] not in earlier:
                self.errors.append((where, f"{raw}: step {path[1]!r} {self.unreachable(path[1])}"))
            elif len(path) > 2 and isinstance(path[2], str):
                self.check_output_key(earlier[path[1]], path[2], where)
        elif (
            root == "input"
            and self.declared_inputs
            and len(path) > 1
            and path[1] not in self.declared_inputs
        ):
            self.warnings.append((where, f"{raw}: {path[1]!r} is not a declared input"))

    def check_output_key(self, step: Any, key: str, where: str) -> None:
        known = step_output_keys(step)
        if known is None or key in known:
            return
        warning = (
            where,
            f"steps.{step.id}.{key}: {step.type} step '{step.id}' has no output key '{key}'; "
            f"known: {', '.join(sorted(known))}",
        )
        if warning not in self.warnings:
            self.warnings.append(warning)

    def unreachable(self, step_id: str) -> str:
        if step_id not in self.by_id:
            return "does not exist"
        if step_id in self.holder:
            holder = self.holder[step_id]
            return (
                f"is inside {holder!r}, whose inner steps are only visible within it; "
                f"use ${{steps.{holder}.output}}"
            )
        return "runs later"

    def load_prompt(self, relative: str, where: str) -> str | None:
        if relative in self.prompts:
            return self.prompts[relative]  # several steps may share a template: expand it once
        try:
            text = expand_includes(self.prompts_dir, relative)
        except PromptError as exc:
            self.errors.append((where, str(exc)))
            return None
        self.prompts[relative] = text
        return text


class _StepScope:
    """What one step sees: the StepChecks its `check()` gets, with paths made absolute."""

    def __init__(self, checker: _DefinitionChecker, loc: Located) -> None:
        self.checker = checker
        self.loc = loc

    def _where(self, where: str) -> str:
        return f"{self.loc.json_path}.{where}"

    def _scope(self, inner: bool, names: tuple[str, ...]) -> tuple[dict[str, Any], frozenset[str]]:
        by_id = self.checker.by_id
        ids = set(self.loc.visible) | (block_ids(self.loc.step) if inner else set())
        return {i: by_id[i] for i in ids}, self.loc.variables | frozenset(names)

    def refs(
        self, value: Any, where: str, *, inner: bool = False, names: tuple[str, ...] = ()
    ) -> None:
        if value is None:
            return
        earlier, variables = self._scope(inner, names)
        self.checker.check_refs(value, self._where(where), earlier, variables)

    def condition(
        self, text: str, where: str, *, inner: bool = False, names: tuple[str, ...] = ()
    ) -> None:
        earlier, variables = self._scope(inner, names)
        try:
            for path in compile_condition(text).paths():
                # Quote the path, not the condition: a long one quoted per path adds up.
                self.checker.check_path(
                    f"${{{format_path(path)}}}", path, self._where(where), earlier, variables
                )
        except ExpressionError as exc:
            self.checker.errors.append((self._where(where), str(exc)))

    def prompt(
        self, text: str, where: str, variables: dict[str, Any], *, file: str | None = None
    ) -> None:
        at = self._where(where)
        if file is not None:
            loaded = self.checker.load_prompt(file, at)
            if loaded is None:
                return
            text = loaded
        # A foreach's item/index names read in a prompt like variables of the step.
        known_names = {**dict.fromkeys(self.loc.variables), **variables}
        for msg in check_placeholders(text, known_names):
            self.checker.errors.append((at, f"{file}: {msg}" if file else msg))
        # Placeholders that are references (not variables) must name earlier steps too.
        earlier, names = self._scope(False, ())
        for raw in placeholders(text):
            try:
                path = parse_path(raw)
            except ReferenceSyntaxError:
                continue  # reported by check_placeholders
            if path[0] in ROOTS and path[0] not in variables:
                self.checker.check_path(f"${{{raw}}}", path, at, earlier, names)

    def service(self, service: str, operation: str, where: str) -> None:
        has_service = self.checker.has_service
        if has_service is not None and not has_service(service, operation):
            self.checker.errors.append(
                (self._where(where), f"unknown service/operation {service}.{operation}")
            )

    def transform(self, operation: str, config: dict[str, Any], where: str) -> None:
        # Paths come back relative to the step's `config` object (`operation`, `config.sep`).
        for rel, msg in check_transform_config(operation, config):
            self.checker.errors.append((self._where(f"{where}.{rel}"), msg))

    def error(self, where: str, message: str) -> None:
        self.checker.errors.append((self._where(where), message))

    def json_schema(self, schema: dict[str, Any] | None, where: str) -> None:
        problem = json_schema_problem(schema)
        if problem:
            self.checker.errors.append((self._where(where), problem))


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
