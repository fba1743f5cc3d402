"""How an operation declares its parameters, and the checks shared by load time and run time.

One declaration serves both: `check_transform_config` runs it on the definition file (where a
parameter may still be a `${…}` reference, so references are not type-checked), and
`apply_transform` runs it again on the resolved config before touching the data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workflow_defs.transforms.errors import TransformError
from workflow_defs.transforms.paths import check_path

Problem = tuple[str, str]  # (path relative to the transform step, e.g. "config.pattern"; message)
ApplyFn = Callable[[Any, Mapping[str, Any]], Any]
CheckFn = Callable[[Mapping[str, Any], bool], list[Problem]]


def kind_of(value: Any) -> str:
    """JSON kind name of a value, as used in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _accepts(kinds: tuple[str, ...], value: Any) -> bool:
    kind = kind_of(value)
    return "any" in kinds or kind in kinds or (kind == "integer" and "number" in kinds)


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def is_reference(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def deferred(value: Any, at_load: bool) -> bool:
    """True when a value can't be judged yet: a `${…}` reference seen at load time."""
    return at_load and is_reference(value)


@dataclass(frozen=True)
class OperationSpec:
    name: str
    apply: ApplyFn
    # parameter name → accepted JSON kinds ("string", "integer", "number", "boolean",
    # "object", "array", "any"). Parameters not listed are ignored, not rejected.
    params: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Each group: at least one of these parameters must be given.
    required: tuple[tuple[str, ...], ...] = ()
    # Semantic checks run after the type checks pass: (config, at_load) → problems.
    check: CheckFn | None = None

    def problems(self, config: Mapping[str, Any], at_load: bool) -> list[Problem]:
        found: list[Problem] = []
        for name, kinds in self.params.items():
            value = config.get(name)
            if value is None or deferred(value, at_load) or _accepts(kinds, value):
                continue
            wanted = " or ".join(_article(k) for k in kinds)
            found.append((f"config.{name}", f"must be {wanted} (got {kind_of(value)})"))
        for group in self.required:
            if all(config.get(name) is None for name in group):
                names = " or ".join(f"'{n}'" for n in group)
                found.append((f"config.{group[0]}", f"{self.name} needs {names}"))
        if not found and self.check is not None:
            found.extend(self.check(config, at_load))
        return found

    def run(self, data: Any, config: Mapping[str, Any]) -> Any:
        problems = self.problems(config, at_load=False)
        if problems:
            where, message = problems[0]
            raise TransformError(self.name, where, message)
        return self.apply(data, config)


def path_problems(
    config: Mapping[str, Any], names: tuple[str, ...], at_load: bool
) -> list[Problem]:
    """Syntax problems of the string parameters `names` that hold data paths."""
    found: list[Problem] = []
    for name in names:
        value = config.get(name)
        if isinstance(value, str) and not deferred(value, at_load):
            error = check_path(value)
            if error:
                found.append((f"config.{name}", error))
    return found


def config_path_error(operation: str, name: str, message: str) -> TransformError:
    return TransformError(operation, f"config.{name}", message)
