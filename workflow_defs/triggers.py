"""Inbound-webhook triggers: workflow_defs/triggers.json, loaded at gateway start.

    {
      "sources": {"github": {"secret_env": "GITHUB_WEBHOOK_SECRET"}},
      "triggers": [
        {"name": "summarise-article", "source": "strapi", "event": "entry.publish",
         "model": "article", "workflow": "quickstart", "input": {"topic": "${entry.title}"}}
      ]
    }

A trigger maps (source, event, model) to a workflow (+ optional version) and an input mapping
whose `${…}` references resolve against the webhook body (`${entry.title}`, `${model}`). The
`model` matched is the body's `model`, else its `entity`, else the X-Strapi-Entity header (the
event likewise falls back to X-Strapi-Event / X-Webhook-Event); `${event}`, `${model}` and
`${entity}` read those resolved values, wherever they came from.
`event` and `model` may be "*". `strapi` is built in (STRAPI_WEBHOOK_SECRET/TOKEN); other sources
name the env vars holding their HMAC secret and/or bearer token. Errors name the file and the
JSON path, like definition errors, and the gateway refuses to start on them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workflow_defs.loader import DefinitionError, DefinitionRegistry, Problem
from workflow_defs.references import ReferenceSyntaxError, find_references

TRIGGERS_FILE = "triggers.json"
STRAPI = "strapi"
WILDCARD = "*"
# Top-level keys of the bodies Strapi sends (entry.* events carry `entry`, media.* `media`), and
# `entity`, the integration layer's name for `model`.
STRAPI_ROOTS = frozenset({"event", "createdAt", "model", "entity", "uid", "entry", "media"})
_SOURCE_NAME = r"^[a-z][a-z0-9_-]{0,62}$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class TriggerConfigError(DefinitionError):
    """triggers.json is unreadable or invalid; str() lists every problem with its JSON path."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Model):
    """Where a non-built-in source's credentials live: env var names, never the values."""

    secret_env: str | None = Field(default=None, pattern=_ENV_NAME)
    token_env: str | None = Field(default=None, pattern=_ENV_NAME)
    description: str | None = None

    @model_validator(mode="after")
    def _one_credential(self) -> SourceConfig:
        if not self.secret_env and not self.token_env:
            raise ValueError("give secret_env (HMAC secret) and/or token_env (bearer token)")
        return self


class Trigger(_Model):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = None
    source: str = Field(pattern=_SOURCE_NAME)
    event: str = Field(min_length=1, max_length=200)
    model: str = WILDCARD
    workflow: str = Field(min_length=1, max_length=200)
    version: str | None = Field(default=None, max_length=50)
    input: dict[str, Any] = Field(default_factory=dict)

    def matches(self, source: str, event: str, model: str | None) -> bool:
        return (
            self.source == source
            and self.event in (WILDCARD, event)
            and self.model in (WILDCARD, model)
        )

    @property
    def key(self) -> str:
        """Stable identity of the trigger (for idempotency keys): its content, not its position,
        so reordering triggers.json doesn't turn a redelivery into a second job."""
        body = self.model_dump(mode="json", exclude={"description"})
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def label(self) -> str:
        return self.name or f"{self.source}:{self.event}:{self.model}->{self.workflow}"


class TriggerFile(_Model):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    comment: str | None = Field(default=None, alias="$comment")
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    triggers: list[Trigger] = Field(default_factory=list)


class TriggerConfig:
    """The validated triggers, in file order, and the extra sources they may come from."""

    def __init__(self, parsed: TriggerFile | None = None) -> None:
        parsed = parsed or TriggerFile()
        self.sources: dict[str, SourceConfig] = dict(parsed.sources)
        self.triggers: list[Trigger] = list(parsed.triggers)

    def knows_source(self, source: str) -> bool:
        return source == STRAPI or source in self.sources

    def matching(self, source: str, event: str, model: str | None) -> list[Trigger]:
        return [t for t in self.triggers if t.matches(source, event, model)]


def _json_path(loc: Iterable[Any]) -> str:
    out = "$"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate_triggers(
    data: Any, definitions: DefinitionRegistry, *, source: str = TRIGGERS_FILE
) -> TriggerConfig:
    if not isinstance(data, dict):
        raise TriggerConfigError([Problem(source, "$", "triggers file must be a JSON object")])
    try:
        parsed = TriggerFile.model_validate(data)
    except ValidationError as exc:
        raise TriggerConfigError(
            [Problem(source, _json_path(e["loc"]), e["msg"]) for e in exc.errors(include_url=False)]
        ) from None
    problems: list[Problem] = []
    for name in parsed.sources:
        where = f"$.sources.{name}"
        if name == STRAPI:
            problems.append(
                Problem(
                    source,
                    where,
                    "strapi is built in: set STRAPI_WEBHOOK_SECRET and/or STRAPI_WEBHOOK_TOKEN",
                )
            )
        elif not _valid_source_name(name):
            problems.append(Problem(source, where, "source names are lowercase [a-z0-9_-]"))
    seen: dict[str, int] = {}
    names: dict[str, int] = {}
    for i, trigger in enumerate(parsed.triggers):
        where = f"$.triggers[{i}]"
        problems.extend(Problem(source, where + p, m) for p, m in _check_trigger(trigger, parsed))
        problems.extend(
            Problem(source, where + p, m) for p, m in _check_workflow(trigger, definitions)
        )
        if trigger.name is not None:
            if trigger.name in names:
                problems.append(
                    Problem(
                        source, where + ".name", f"also used by $.triggers[{names[trigger.name]}]"
                    )
                )
            names.setdefault(trigger.name, i)
        if trigger.key in seen:
            problems.append(Problem(source, where, f"duplicates $.triggers[{seen[trigger.key]}]"))
        seen.setdefault(trigger.key, i)
    if problems:
        raise TriggerConfigError(problems)
    return TriggerConfig(parsed)


def _valid_source_name(name: str) -> bool:
    return re.fullmatch(_SOURCE_NAME, name) is not None


def _check_trigger(trigger: Trigger, parsed: TriggerFile) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if trigger.source != STRAPI and trigger.source not in parsed.sources:
        known = ", ".join(sorted({STRAPI, *parsed.sources}))
        problems.append(
            (
                ".source",
                f"unknown source {trigger.source!r}; declare it under $.sources (known: {known})",
            )
        )
    for field in ("event", "model"):
        value = getattr(trigger, field)
        if WILDCARD in value and value != WILDCARD:
            problems.append((f".{field}", f"{value!r}: use '*' alone to match any {field}"))
    for key, value in trigger.input.items():
        where = f".input.{key}"
        try:
            refs = find_references(value)
        except ReferenceSyntaxError as exc:
            problems.append((where, str(exc)))
            continue
        if trigger.source == STRAPI:
            for raw, path in refs:
                if path[0] not in STRAPI_ROOTS:
                    roots = ", ".join(sorted(STRAPI_ROOTS))
                    problems.append(
                        (where, f"{raw}: a Strapi event has no {path[0]!r} (use {roots})")
                    )
    return problems


def _check_workflow(trigger: Trigger, definitions: DefinitionRegistry) -> list[tuple[str, str]]:
    loaded = definitions.get(trigger.workflow, trigger.version)
    if loaded is None:
        if trigger.version is not None and definitions.versions(trigger.workflow):
            known = ", ".join(definitions.versions(trigger.workflow))
            return [
                (
                    ".version",
                    f"{trigger.workflow} has no version {trigger.version!r} (versions: {known})",
                )
            ]
        names = ", ".join(definitions.names()) or "none loaded"
        return [(".workflow", f"unknown workflow {trigger.workflow!r} (known: {names})")]
    # A required input the mapping never supplies would reject every event with 422.
    defn = loaded.definition
    required = {s.name for s in defn.inputs if s.required and s.default is None}
    required |= set((defn.input_schema or {}).get("required", []) or [])
    missing = sorted(required - set(trigger.input))
    if missing:
        return [
            (
                ".input",
                f"{loaded.name} {loaded.version} requires input {', '.join(map(repr, missing))}",
            )
        ]
    return []


def load_triggers(path: Path, definitions: DefinitionRegistry) -> TriggerConfig:
    """Load and validate triggers.json; a missing file means no triggers (every event is
    acknowledged and nothing starts). Raises TriggerConfigError naming the file and JSON path."""
    source = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return TriggerConfig()
    except OSError as exc:
        raise TriggerConfigError([Problem(source, "$", f"cannot read file: {exc}")]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TriggerConfigError(
            [
                Problem(
                    source, "$", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
                )
            ]
        ) from None
    return validate_triggers(data, definitions, source=source)
