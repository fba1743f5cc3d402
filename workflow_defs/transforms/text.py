"""Text transforms: regex_extract and json_parse.

- regex_extract: `pattern` (one result) or `patterns` (object name → pattern; result object
  name → result). `group` (index or name) defaults to the whole match for a pattern without
  groups and to group 1 otherwise. `all_matches` → list of every match, else the first match or
  None. Patterns compile with MULTILINE and DOTALL, as in the earlier service; `ignore_case`
  (extension) adds IGNORECASE. Non-string data is matched as its JSON text (None as "").
  Python's `re` has no timeout, so input is capped at MAX_REGEX_INPUT characters.
- json_parse: parses JSON text tolerantly: plain JSON, else the first ``` fenced block that
  parses, else the first object/array embedded in prose. Data that is already parsed (not a
  string) passes through. Failure → `default` when the config has one, else an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from workflow_defs.transforms.errors import TransformError
from workflow_defs.transforms.spec import OperationSpec, Problem, deferred, kind_of
from workflow_defs.transforms.values import to_text

MAX_REGEX_INPUT = 1_000_000
_BASE_FLAGS = re.MULTILINE | re.DOTALL

# --- regex_extract ----------------------------------------------------------------------------


def _patterns(config: Mapping[str, Any]) -> list[tuple[str, str | None, Any]]:
    """(config location, result name or None for the single `pattern`, pattern text)."""
    if config.get("pattern") is not None:
        return [("config.pattern", None, config["pattern"])]
    return [(f"config.patterns.{name}", name, p) for name, p in config["patterns"].items()]


def _flags(config: Mapping[str, Any]) -> int:
    return _BASE_FLAGS | (re.IGNORECASE if config.get("ignore_case") else 0)


def _group_problem(compiled: re.Pattern[str], group: Any) -> str | None:
    if group is None:
        return None
    if isinstance(group, int):
        if group > compiled.groups:
            return f"group {group} does not exist (the pattern has {compiled.groups} groups)"
        return None
    if isinstance(group, str) and group.isdigit():
        return _group_problem(compiled, int(group))
    if group not in compiled.groupindex:
        names = ", ".join(compiled.groupindex) or "none"
        return f"group {group!r} is not a named group of the pattern (named groups: {names})"
    return None


def _check_regex(config: Mapping[str, Any], at_load: bool) -> list[Problem]:
    found: list[Problem] = []
    group = config.get("group")
    if isinstance(group, int) and group < 0:
        found.append(("config.group", f"must be 0 or more (got {group})"))
        group = None
    if deferred(config.get("patterns"), at_load):
        return found
    for where, _name, pattern in _patterns(config):
        if deferred(pattern, at_load):
            continue
        if not isinstance(pattern, str):
            found.append((where, f"must be a string (got {kind_of(pattern)})"))
            continue
        try:
            compiled = re.compile(pattern, _flags(config))
        except re.error as exc:
            found.append((where, f"not a valid regular expression: {exc}"))
            continue
        if not deferred(group, at_load) and (error := _group_problem(compiled, group)):
            found.append(("config.group", f"{error} in {where}"))
    return found


def _extract_one(compiled: re.Pattern[str], text: str, config: Mapping[str, Any]) -> Any:
    group = config.get("group")
    if group is None:
        group = 1 if compiled.groups else 0
    elif isinstance(group, str) and group.isdigit():
        group = int(group)
    if config.get("all_matches"):
        return [m.group(group) for m in compiled.finditer(text)]
    match = compiled.search(text)
    return match.group(group) if match else None


def _regex_extract(data: Any, config: Mapping[str, Any]) -> Any:
    text = to_text(data)
    if len(text) > MAX_REGEX_INPUT:
        raise TransformError(
            "regex_extract",
            "input",
            f"is {len(text):,} characters; at most {MAX_REGEX_INPUT:,} are matched",
        )
    results: dict[str, Any] = {}
    for _where, name, pattern in _patterns(config):
        value = _extract_one(re.compile(pattern, _flags(config)), text, config)
        if name is None:
            return value
        results[name] = value
    return results


# --- json_parse -------------------------------------------------------------------------------

_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\r?\n?(.*?)```", re.DOTALL)
_MAX_EMBEDDED_TRIES = 200  # each try may scan to the end; bound the quadratic worst case


def parse_json_text(text: str) -> Any:
    """Tolerant JSON parse; raises ValueError with the first parse error when nothing fits."""
    stripped = text.strip().lstrip("\ufeff")
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[…"
        first_error = exc
    for m in _FENCE.finditer(stripped):
        try:
            return json.loads(m.group(1).strip())
        except (ValueError, RecursionError):
            continue
    decoder = json.JSONDecoder()
    tries = 0
    for m in re.finditer(r"[\[{]", stripped):
        tries += 1
        if tries > _MAX_EMBEDDED_TRIES:
            break
        try:
            value, _end = decoder.raw_decode(stripped, m.start())
        except (ValueError, RecursionError):
            continue
        return value
    raise ValueError(str(first_error))


def _json_parse(data: Any, config: Mapping[str, Any]) -> Any:
    if data is None:
        return config.get("default")
    if not isinstance(data, str):
        return data  # already parsed (e.g. an llm step's `data`)
    try:
        return parse_json_text(data)
    except (ValueError, RecursionError) as exc:
        if "default" in config:
            return config["default"]
        raise TransformError(
            "json_parse",
            "input",
            f"no JSON value found ({exc}); set config.default to use a fallback",
        ) from None


SPECS = [
    OperationSpec(
        "regex_extract",
        _regex_extract,
        {
            "pattern": ("string",),
            "patterns": ("object",),
            "group": ("integer", "string"),
            "all_matches": ("boolean",),
            "ignore_case": ("boolean",),
        },
        required=(("pattern", "patterns"),),
        check=_check_regex,
    ),
    OperationSpec("json_parse", _json_parse, {"default": ("any",)}),
]
