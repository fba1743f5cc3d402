"""Load, validate and register workflow definitions; build the resolved snapshot a run gets.

Errors always name the file and the JSON path (`quickstart.json: $.steps[1].config.operation:
unknown transform operation 'fiter'`). The gateway and the worker call `load_registry` at
start and refuse to start when a shipped definition is invalid.

Definitions also arrive over HTTP (POST /api/v1/workflows/validate), so before anything is
parsed they are held to MAX_DEFINITION_BYTES of JSON and MAX_DEFINITION_DEPTH levels of
nesting, reported at `$` (or the too-deep path) with the limit named. Conditions and prompts
have their own caps, checked where they are parsed (expressions.py, prompts.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.contracts import ResolvedDefinition
from workflow_defs.schema import LATER_STEP_TYPES, STEP_TYPES, WorkflowDefinition, version_key
from workflow_defs.validation import check_definition, extra_field_warnings

# Files in WORKFLOW_DEFS_DIR that are not workflow definitions.
NON_DEFINITION_FILES = {"services.json", "triggers.json"}
MAX_DEFINITION_BYTES = 512 * 1024
MAX_DEFINITION_DEPTH = 64
MAX_REPORTED_PROBLEMS = 100
MAX_MESSAGE_CHARS = 500


@dataclass(frozen=True)
class Problem:
    source: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.path}: {self.message}"


class DefinitionError(Exception):
    """One or more problems in a definition; str() lists them all, one per line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class DefinitionTooLarge(DefinitionError):
    """The definition is over MAX_DEFINITION_BYTES; nothing else was checked."""


@dataclass
class LoadedDefinition:
    definition: WorkflowDefinition
    source: str
    prompts: dict[str, str]
    warnings: list[Problem] = field(default_factory=list)
    _snapshot: ResolvedDefinition | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def version(self) -> str:
        return self.definition.version

    def snapshot(self) -> ResolvedDefinition:
        # Computed once: a loaded definition never changes, and every submit needs it.
        if self._snapshot is None:
            self._snapshot = self._build_snapshot()
        return self._snapshot

    def _build_snapshot(self) -> ResolvedDefinition:
        body = self.definition.model_dump(mode="json", by_alias=True, exclude_none=True)
        canonical = json.dumps({"definition": body, "prompts": self.prompts}, sort_keys=True)
        return ResolvedDefinition(
            name=self.name,
            version=self.version,
            content_hash="sha256:" + hashlib.sha256(canonical.encode()).hexdigest(),
            definition=body,
            prompts=self.prompts,
        )


def _json_path(loc: Iterable[Any], data: Any) -> str:
    """pydantic loc → JSON path, dropping discriminator tags (`steps.0.llm.config` → steps[0].config)."""
    out = "$"
    node = data
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            # After a step index comes the union tag; skip it when it matches the step's type.
            if i + 1 < len(parts) and isinstance(node, dict) and parts[i + 1] == node.get("type"):
                i += 1
        elif isinstance(part, str) and not part.startswith(("function-", "union[")):
            if node is not None and not isinstance(node, dict):
                # A scalar/list has no keys: this is a union member's tag (`literal['text']`).
                i += 1
                continue
            out += f".{part}"
            node = node.get(part) if isinstance(node, dict) else None
        i += 1
    return out


def _pydantic_problems(exc: ValidationError, data: Any, source: str) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        path = _json_path(err["loc"], data)
        message = err["msg"]
        if err["type"] == "union_tag_invalid":
            tag = err.get("input", {}).get("type") if isinstance(err.get("input"), dict) else None
            later = " (it comes in a later release)" if tag in LATER_STEP_TYPES else ""
            message = f"unknown step type {tag!r}{later}; expected one of {', '.join(STEP_TYPES)}"
            path += ".type"
        elif err["type"] == "union_tag_not_found":
            message = f"step has no 'type'; expected one of {', '.join(STEP_TYPES)}"
            path += ".type"
        problems.append(Problem(source, path, message))
    return problems


def definition_bytes(data: Any) -> int:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return len(text.encode("utf-8", "surrogatepass"))


def _too_deep(data: Any) -> str | None:
    """JSON path of the first value nested deeper than MAX_DEFINITION_DEPTH, else None.

    Iterative on purpose: the recursive checks that follow are what deep nesting would break.
    """
    keys: list[str | int] = []
    stack = [_children(data)]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            if keys:
                keys.pop()
            continue
        key, child = entry
        if isinstance(child, dict | list):
            keys.append(key)
            if len(keys) >= MAX_DEFINITION_DEPTH:
                return "$" + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys)
            stack.append(_children(child))
    return None


def _children(value: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(value, dict):
        return iter(value.items())
    if isinstance(value, list):
        return enumerate(value)
    return iter(())


def _size_problems(data: dict[str, Any], source: str) -> list[Problem]:
    where = _too_deep(data)
    if where is not None:
        return [Problem(source, where, f"nests deeper than {MAX_DEFINITION_DEPTH} levels")]
    size = definition_bytes(data)
    if size > MAX_DEFINITION_BYTES:
        message = (
            f"the definition is {size:,} bytes as JSON, over the {MAX_DEFINITION_BYTES:,}-byte "
            f"limit"
        )
        raise DefinitionTooLarge([Problem(source, "$", message)])
    return []


def validate_definition(
    data: Any,
    *,
    source: str,
    prompts_dir: Path,
    has_service: Callable[[str, str], bool] | None = None,
) -> LoadedDefinition:
    if not isinstance(data, dict):
        raise DefinitionError([Problem(source, "$", "a definition must be a JSON object")])
    problems = _size_problems(data, source)
    if problems:
        raise DefinitionError(problems)
    try:
        defn = WorkflowDefinition.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(_reported(_pydantic_problems(exc, data, source), source)) from None
    errors, warnings, prompts = check_definition(
        defn, prompts_dir=prompts_dir, has_service=has_service
    )
    if errors:
        raise DefinitionError(_reported([Problem(source, p, m) for p, m in errors], source))
    all_warnings = [Problem(source, p, m) for p, m in [*extra_field_warnings(defn), *warnings]]
    return LoadedDefinition(defn, source, prompts, _reported(all_warnings, source))


def _reported(problems: list[Problem], source: str) -> list[Problem]:
    """At most MAX_REPORTED_PROBLEMS, each at most MAX_MESSAGE_CHARS: a body of a few hundred
    KiB can otherwise yield thousands of problems that each quote a long condition."""
    shown = [
        p
        if len(p.message) <= MAX_MESSAGE_CHARS
        else Problem(p.source, p.path, p.message[:MAX_MESSAGE_CHARS] + "…")
        for p in problems[:MAX_REPORTED_PROBLEMS]
    ]
    if len(problems) > MAX_REPORTED_PROBLEMS:
        more = len(problems) - MAX_REPORTED_PROBLEMS
        shown.append(Problem(source, "$", f"… and {more:,} more problems not listed"))
    return shown


def load_definition_file(
    path: Path, *, prompts_dir: Path, has_service: Callable[[str, str], bool] | None = None
) -> LoadedDefinition:
    source = path.name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DefinitionError(
            [
                Problem(
                    source, "$", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
                )
            ]
        ) from None
    except OSError as exc:
        raise DefinitionError([Problem(source, "$", f"cannot read file: {exc}")]) from None
    return validate_definition(
        data, source=source, prompts_dir=prompts_dir, has_service=has_service
    )


class DefinitionRegistry:
    """Definitions by name, several versions each; the default version is the highest."""

    def __init__(self) -> None:
        self._by_name: dict[str, dict[str, LoadedDefinition]] = {}

    def add(self, loaded: LoadedDefinition) -> None:
        versions = self._by_name.setdefault(loaded.name, {})
        if loaded.version in versions:
            other = versions[loaded.version].source
            raise DefinitionError(
                [
                    Problem(
                        loaded.source,
                        "$.version",
                        f"{loaded.name} {loaded.version} is also defined in {other}",
                    )
                ]
            )
        versions[loaded.version] = loaded

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def versions(self, name: str) -> list[str]:
        return sorted(self._by_name.get(name, {}), key=version_key, reverse=True)

    def get(self, name: str, version: str | None = None) -> LoadedDefinition | None:
        versions = self._by_name.get(name)
        if not versions:
            return None
        if version is None:
            return versions[max(versions, key=version_key)]
        return versions.get(version)

    def not_found(self, name: str, version: str | None = None) -> str:
        """Why get(name, version) found nothing, with what there is: one wording for the
        API (POST /jobs, GET /workflows/…) and the CLI."""
        known = self.versions(name)
        if not known:
            return f"workflow {name!r} not found; workflows: {', '.join(self.names()) or 'none'}"
        return f"workflow {name!r} has no version {version}; versions: {', '.join(known)}"

    def all(self) -> list[LoadedDefinition]:
        return [self._by_name[n][v] for n in self.names() for v in self.versions(n)]

    def warnings(self) -> list[Problem]:
        return [w for d in self.all() for w in d.warnings]


def definition_files(defs_dir: Path) -> list[Path]:
    return sorted(p for p in defs_dir.glob("*.json") if p.name not in NON_DEFINITION_FILES)


def load_registry(
    defs_dir: Path,
    *,
    prompts_dir: Path,
    has_service: Callable[[str, str], bool] | None = None,
    extra_files: Iterable[Path] = (),
) -> DefinitionRegistry:
    """Load every definition; raises one DefinitionError listing every problem in every file."""
    registry = DefinitionRegistry()
    problems: list[Problem] = []
    for path in [*definition_files(defs_dir), *extra_files]:
        try:
            registry.add(
                load_definition_file(path, prompts_dir=prompts_dir, has_service=has_service)
            )
        except DefinitionError as exc:
            problems.extend(exc.problems)
    if problems:
        raise DefinitionError(problems)
    return registry
