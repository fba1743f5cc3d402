"""Does a newer version of a workflow still accept every input an older one accepted?

Jobs that name no version run the highest one, so a client written against an older version
meets the newest as soon as it ships. The rule (docs/dsl.md, "Versioning a workflow"): a newer
version accepts every input an older version accepted, with the same meaning. Meaning can't be
checked mechanically; acceptance can, from what a definition declares about its input:

- the JSON types an input accepts (`inputs[].type` and `input_schema.properties.<name>.type`,
  both applied; `integer` is a kind of `number`);
- whether it is required (required without a default, or listed in `input_schema.required`
  without a default: defaults are applied before the schema is checked);
- its allowed values (`enum`, `const`);
- numeric bounds (`minimum`, `exclusiveMinimum`, `maximum`, `exclusiveMaximum`) and sizes
  (`minLength`/`maxLength`, `minItems`/`maxItems`, `minProperties`/`maxProperties`);
- `additionalProperties: false` at the top of `input_schema` (names not declared are refused).

`narrowings(old, new)` lists what `new` refuses that `old` accepted; `compatibility_warnings`
compares every version of each workflow with every older one. Constraints this module can't
read (`anyOf`, `pattern`, `format`, nested schemas) are never reported, so it finds narrowings
but can't prove their absence. The result is a warning, never an error: a major version may
break its inputs on purpose, and then clients have to name the version they were written for.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from workflow_defs.loader import Problem, definition_files
from workflow_defs.schema import WorkflowDefinition, version_key

# The JSON types an input value can have (null means "absent": a default applies, or the
# required check fails, in every version alike).
JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object"})
_LOWER_SIZES = ("minLength", "minItems", "minProperties")
_UPPER_SIZES = ("maxLength", "maxItems", "maxProperties")

# A numeric bound as a comparable pair: for a lower bound, a larger pair is stricter
# ((v, 1) is "> v", (v, 0) is ">= v"); for an upper bound a smaller pair is stricter
# ((v, 0) is "< v", (v, 1) is "<= v").
Bound = tuple[float, int]


@dataclass(frozen=True)
class InputContract:
    """What one version accepts for one input name."""

    types: frozenset[str] | None = None  # None: any type
    required: bool = False
    enum: tuple[Any, ...] | None = None  # None: any value
    lower: Bound | None = None
    upper: Bound | None = None
    sizes: tuple[tuple[str, int], ...] = ()  # (keyword, value) of the *Length/*Items keywords


@dataclass(frozen=True)
class Narrowing:
    input: str  # the input's name, or "" for the whole input object
    message: str


@dataclass(frozen=True)
class Contracts:
    inputs: dict[str, InputContract]
    closed: bool  # input_schema says additionalProperties: false


def _schema_types(value: Any) -> frozenset[str] | None:
    """A JSON Schema `type` (a name or a list of names) → the set this module reasons about."""
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else None
    if names is None or not all(isinstance(n, str) for n in names):
        return None
    return frozenset(n for n in names if n in JSON_TYPES)


def _accepts(types: frozenset[str] | None, kind: str) -> bool:
    if types is None:
        return True
    return kind in types or (kind == "integer" and "number" in types)


def _intersect(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    if a is None or b is None:
        return b if a is None else a
    return frozenset(t for t in JSON_TYPES if _accepts(a, t) and _accepts(b, t))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _values(prop: Mapping[str, Any]) -> tuple[Any, ...] | None:
    if "const" in prop:
        return (prop["const"],)
    enum = prop.get("enum")
    return tuple(enum) if isinstance(enum, list) else None


def _intersect_enums(
    a: tuple[Any, ...] | None, b: tuple[Any, ...] | None
) -> tuple[Any, ...] | None:
    if a is None or b is None:
        return b if a is None else a
    allowed = {_canonical(v) for v in b}
    return tuple(v for v in a if _canonical(v) in allowed)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _lower(prop: Mapping[str, Any]) -> Bound | None:
    bounds: list[Bound] = []
    if (v := _number(prop.get("minimum"))) is not None:
        bounds.append((v, 0))
    if (v := _number(prop.get("exclusiveMinimum"))) is not None:
        bounds.append((v, 1))
    return max(bounds) if bounds else None


def _upper(prop: Mapping[str, Any]) -> Bound | None:
    bounds: list[Bound] = []
    if (v := _number(prop.get("maximum"))) is not None:
        bounds.append((v, 1))
    if (v := _number(prop.get("exclusiveMaximum"))) is not None:
        bounds.append((v, 0))
    return min(bounds) if bounds else None


def _sizes(prop: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    return tuple(
        (key, prop[key])
        for key in (*_LOWER_SIZES, *_UPPER_SIZES)
        if isinstance(prop.get(key), int) and not isinstance(prop.get(key), bool)
    )


def contracts(defn: WorkflowDefinition) -> Contracts:
    """Every input name `defn` declares (in `inputs` or `input_schema.properties`) with what it
    accepts there."""
    schema = defn.input_schema if isinstance(defn.input_schema, dict) else {}
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    schema_required = schema.get("required")
    schema_required = set(schema_required) if isinstance(schema_required, list) else set()
    specs = {spec.name: spec for spec in defn.inputs}
    out: dict[str, InputContract] = {}
    for name in [*specs, *(n for n in props if n not in specs)]:
        spec = specs.get(name)
        prop = props.get(name)
        prop = prop if isinstance(prop, dict) else {}
        declared = None if spec is None or spec.type == "any" else frozenset({spec.type})
        has_default = spec is not None and spec.default is not None
        required = not has_default and (
            (spec is not None and spec.required) or name in schema_required
        )
        spec_enum = tuple(spec.enum) if spec is not None and spec.enum is not None else None
        out[name] = InputContract(
            types=_intersect(declared, _schema_types(prop.get("type"))),
            required=required,
            enum=_intersect_enums(spec_enum, _values(prop)),
            lower=_lower(prop),
            upper=_upper(prop),
            sizes=_sizes(prop),
        )
    # Required names the schema lists without declaring them anywhere else.
    for name in schema_required:
        if isinstance(name, str) and name not in out:
            out[name] = InputContract(required=True)
    return Contracts(out, closed=schema.get("additionalProperties") is False)


def _types_text(types: frozenset[str] | None) -> str:
    return "any type" if types is None else " or ".join(sorted(types)) or "no type"


def _bound_text(bound: Bound | None, lower: bool) -> str:
    if bound is None:
        return "none"
    value, flag = bound
    shown = f"{value:g}"
    if lower:
        return f"> {shown}" if flag else f">= {shown}"
    return f"<= {shown}" if flag else f"< {shown}"


def _input_narrowings(old: InputContract, new: InputContract) -> list[str]:
    found: list[str] = []
    accepted = JSON_TYPES if old.types is None else old.types
    lost = sorted(t for t in accepted if not _accepts(new.types, t))
    if lost:
        found.append(
            f"type narrowed from {_types_text(old.types)} to {_types_text(new.types)} "
            f"({', '.join(lost)} no longer accepted)"
        )
    if new.required and not old.required:
        found.append("now required (it was optional)")
    if new.enum is not None:
        allowed = {_canonical(v) for v in new.enum}
        if old.enum is None:
            found.append(f"values now limited to {list(new.enum)} (any value was accepted)")
        else:
            dropped = [v for v in old.enum if _canonical(v) not in allowed]
            if dropped:
                found.append(f"enum narrowed: {dropped} no longer accepted")
    if new.lower is not None and (old.lower is None or new.lower > old.lower):
        found.append(
            f"lower bound raised from {_bound_text(old.lower, True)} to "
            f"{_bound_text(new.lower, True)}"
        )
    if new.upper is not None and (old.upper is None or new.upper < old.upper):
        found.append(
            f"upper bound lowered from {_bound_text(old.upper, False)} to "
            f"{_bound_text(new.upper, False)}"
        )
    old_sizes = dict(old.sizes)
    for key, value in new.sizes:
        before = old_sizes.get(key)
        if before is None:
            found.append(f"{key} {value} added")
        elif (value > before) if key in _LOWER_SIZES else (value < before):
            found.append(f"{key} changed from {before} to {value}")
    return found


def narrowings(old: WorkflowDefinition, new: WorkflowDefinition) -> list[Narrowing]:
    """What `new` refuses that `old` accepted, one entry per input and reason."""
    before, after = contracts(old), contracts(new)
    found: list[Narrowing] = []
    for name, new_contract in after.inputs.items():
        old_contract = before.inputs.get(name)
        if old_contract is None:
            # Undeclared before: a new optional input that checks its type is how workflows
            # grow (the older version ignored the name), so only requiring it counts.
            if new_contract.required:
                found.append(
                    Narrowing(name, f"new required input (version {old.version} had none)")
                )
            continue
        found.extend(Narrowing(name, m) for m in _input_narrowings(old_contract, new_contract))
    if after.closed:
        if not before.closed:
            found.append(
                Narrowing(
                    "",
                    "input_schema now has additionalProperties: false, so input names it doesn't "
                    f"declare are refused (version {old.version} accepted them)",
                )
            )
        else:
            for name in before.inputs:
                if name not in after.inputs:
                    found.append(
                        Narrowing(name, "no longer declared, and undeclared names are refused")
                    )
    return found


def _where(defn: WorkflowDefinition, name: str) -> str:
    """JSON path of the input `name` in `defn` (the whole input_schema for "")."""
    if not name:
        return "$.input_schema"
    for i, spec in enumerate(defn.inputs):
        if spec.name == name:
            return f"$.inputs[{i}]"
    props = (defn.input_schema or {}).get("properties")
    if isinstance(props, dict) and name in props:
        return f"$.input_schema.properties.{name}"
    return "$.input_schema.required"  # declared only as a required name


def compatibility_warnings(
    definitions: Iterable[tuple[str, WorkflowDefinition]],
) -> list[Problem]:
    """Compare each version of a workflow with every older version among `definitions`
    ((source, definition) pairs, typically the files of one directory). One Problem per
    narrowing, reported at the newer version's file and the input's JSON path."""
    by_name: dict[str, dict[str, tuple[str, WorkflowDefinition]]] = {}
    for source, defn in definitions:
        by_name.setdefault(defn.name, {}).setdefault(defn.version, (source, defn))
    problems: list[Problem] = []
    for name in sorted(by_name):
        ordered = sorted(by_name[name].values(), key=lambda sd: version_key(sd[1].version))
        for i, (new_source, new) in enumerate(ordered):
            for old_source, old in ordered[:i]:
                for n in narrowings(old, new):
                    subject = f"input {n.input!r}" if n.input else "the input"
                    problems.append(
                        Problem(
                            new_source,
                            _where(new, n.input),
                            f"{subject} is narrower than in {name} {old.version} "
                            f"({old_source}): {n.message} (see 'Versioning a workflow' in "
                            "docs/dsl.md)",
                        )
                    )
    return problems


def read_definition(path: Path) -> WorkflowDefinition | None:
    """The definition in `path` as far as its inputs go, or None when it doesn't parse (its
    problems are for `llmflow validate` of that file to report, not for this comparison)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return WorkflowDefinition.model_validate(data)
    except (OSError, ValueError, ValidationError, RecursionError):
        return None


def directory_warnings(
    checked: Mapping[Path, WorkflowDefinition],
) -> dict[Path, list[Problem]]:
    """For definitions just checked (path → definition): the narrowings each one makes of an
    older version of the same workflow defined in its own directory, by path."""
    by_dir: dict[Path, dict[Path, WorkflowDefinition]] = {}
    for path, defn in checked.items():
        by_dir.setdefault(path.resolve().parent, {})[path.resolve()] = defn
    out: dict[Path, list[Problem]] = {}
    for directory, mine in by_dir.items():
        pool: dict[Path, WorkflowDefinition] = {}
        for sibling in definition_files(directory):
            key = sibling.resolve()
            parsed = mine[key] if key in mine else read_definition(sibling)
            if parsed is not None:
                pool[key] = parsed
        pool.update(mine)
        names = {path.name: path for path in pool}
        for problem in compatibility_warnings((path.name, d) for path, d in pool.items()):
            path = names[problem.source]
            if path in mine:
                out.setdefault(path, []).append(problem)
    resolved = {path.resolve(): path for path in checked}
    return {resolved[p]: problems for p, problems in out.items()}
