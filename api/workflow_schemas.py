"""Response bodies of /api/v1/workflows, and how they are built from loaded definitions."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from workflow_defs.loader import LoadedDefinition, Problem
from workflow_defs.schema import InputSpec, WorkflowDefinition
from workflow_defs.tree import walk_steps

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class InputView(BaseModel):
    name: str
    type: str = Field(description="string, number, integer, boolean, array, object or any")
    required: bool = False
    default: Any = None
    description: str | None = None
    enum: list[Any] | None = None


class StepView(BaseModel):
    id: str
    type: str = Field(description="llm, external_api, transform, http, webhook or a control step")
    display_name: str | None = None
    description: str | None = None
    when: str | None = Field(default=None, description="Condition; the step is skipped when false")
    error_mode: str = Field(
        description="Effective mode (step, else config, else the definition's default): "
        "fail, continue or retry"
    )
    parent: str | None = Field(
        default=None, description="Id of the control step whose block holds it (top level: null)"
    )
    json_path: str = Field(default="", description="Where it is in the definition")


class Issue(BaseModel):
    path: str = Field(description="JSON path into the definition, e.g. `$.steps[1].config`")
    message: str


class WorkflowSummary(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "quickstart",
                    "description": "Explain a topic in a few key points.",
                    "latest_version": "1.0.0",
                    "versions": ["1.0.0"],
                    "steps": 3,
                    "inputs": [
                        {"name": "topic", "type": "string", "required": True},
                        {"name": "audience", "type": "string", "default": "a busy engineer"},
                    ],
                }
            ]
        }
    )

    name: str
    description: str | None = None
    latest_version: str
    versions: list[str] = Field(description="Newest first; jobs without a version run the first")
    steps: int = Field(description="Number of steps in the latest version")
    inputs: list[InputView]


class WorkflowDetail(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "quickstart",
                    "version": "1.0.0",
                    "versions": ["1.0.0"],
                    "description": "Explain a topic in a few key points.",
                    "inputs": [{"name": "topic", "type": "string", "required": True}],
                    "input_schema": {
                        "$schema": JSON_SCHEMA_DIALECT,
                        "type": "object",
                        "properties": {"topic": {"type": "string"}},
                        "required": ["topic"],
                    },
                    "steps": [
                        {"id": "explain", "type": "llm", "error_mode": "fail"},
                        {"id": "summary", "type": "transform", "error_mode": "fail"},
                    ],
                    "output": {"summary": "${steps.summary.output}"},
                    "timeout_seconds": 300,
                    "content_hash": "sha256:6c1f…",
                    "warnings": [],
                }
            ]
        }
    )

    name: str
    version: str
    versions: list[str]
    description: str | None = None
    inputs: list[InputView]
    input_schema: dict[str, Any] = Field(
        description="JSON Schema of `input_data`: `inputs` merged with the definition's own "
        "`input_schema` (its keywords win)"
    )
    steps: list[StepView]
    output: Any = None
    timeout_seconds: float
    content_hash: str = Field(description="Hash of the definition and its expanded prompts")
    warnings: list[Issue]


class ValidationResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "valid": False,
                    "errors": [
                        {
                            "path": "$.steps[0].config.prompt_template",
                            "message": "prompt path '../../etc/passwd' points outside PROMPTS_DIR",
                        }
                    ],
                    "warnings": [],
                    "name": "my_flow",
                    "version": "1.0.0",
                }
            ]
        }
    )

    valid: bool
    errors: list[Issue] = Field(default_factory=list)
    warnings: list[Issue] = Field(default_factory=list)
    name: str | None = None
    version: str | None = None


class WorkflowGraph(BaseModel):
    mermaid: str = Field(description="Mermaid `flowchart TD` source")


def input_view(spec: InputSpec) -> InputView:
    return InputView(
        name=spec.name,
        type=spec.type,
        required=spec.required,
        default=spec.default,
        description=spec.description,
        enum=spec.enum,
    )


def input_json_schema(defn: WorkflowDefinition) -> dict[str, Any]:
    """One JSON Schema for `input_data`, as validate_input applies both `inputs` and
    `input_schema`."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for spec in defn.inputs:
        prop: dict[str, Any] = {}
        if spec.type != "any":
            prop["type"] = spec.type
        if spec.description:
            prop["description"] = spec.description
        if spec.default is not None:
            prop["default"] = spec.default
        if spec.enum is not None:
            prop["enum"] = spec.enum
        properties[spec.name] = prop
        # A default is applied before checking, so a required input with one never fails.
        if spec.required and spec.default is None:
            required.append(spec.name)
    own = copy.deepcopy(defn.input_schema or {})
    for name, extra in (own.pop("properties", None) or {}).items():
        base = properties.get(name, {})
        properties[name] = {**base, **extra} if isinstance(extra, dict) else extra
    for name in own.pop("required", None) or []:
        if name not in required:
            required.append(name)
    schema: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT, "type": "object", **own}
    schema["properties"] = properties
    if required:
        schema["required"] = required
    return schema


def issues(problems: list[Problem]) -> list[Issue]:
    return [Issue(path=p.path, message=p.message) for p in problems]


def summary_of(loaded: LoadedDefinition, versions: list[str]) -> WorkflowSummary:
    defn = loaded.definition
    return WorkflowSummary(
        name=loaded.name,
        description=defn.description,
        latest_version=loaded.version,
        versions=versions,
        steps=len(defn.steps),
        inputs=[input_view(s) for s in defn.inputs],
    )


def detail_of(loaded: LoadedDefinition, versions: list[str]) -> WorkflowDetail:
    defn = loaded.definition
    steps = [
        StepView(
            id=step.id,
            type=step.type,
            display_name=step.display_name,
            description=step.description,
            when=step.when,
            error_mode=defn.step_error_mode(step),
            parent=loc.parent,
            json_path=loc.json_path,
        )
        for loc in walk_steps(defn.steps)
        for step in (loc.step,)
    ]
    return WorkflowDetail(
        name=loaded.name,
        version=loaded.version,
        versions=versions,
        description=defn.description,
        inputs=[input_view(s) for s in defn.inputs],
        input_schema=input_json_schema(defn),
        steps=steps,
        output=defn.output,
        timeout_seconds=defn.timeout_seconds,
        content_hash=loaded.snapshot().content_hash,
        warnings=issues(loaded.warnings),
    )
