"""Text transforms: regex_extract and json_parse.

- regex_extract: `pattern` (one result) or `patterns` (object name → pattern; result object
  name → result). `group` (index or name) defaults to the whole match for a pattern without
  groups and to group 1 otherwise. `all_matches` → list of every match, else the first match or
  None. Patterns compile with MULTILINE and DOTALL, as in the earlier service; `ignore_case`
  (extension) adds IGNORECASE. Non-string data is matched as its JSON text (None as "").
  Python's `re` has no timeout and a user's pattern may backtrack badly, so what it may cost
  is bounded instead: at most MAX_PATTERNS patterns of MAX_PATTERN_CHARS characters, counted
  repeats (`x{n}`) up to MAX_REPEAT, and the text capped at limits.MAX_INPUT_BYTES. A pattern
  `re` refuses (syntax, `x{4294967295}`, nesting too deep) is a definition error at its path.
- json_parse: parses JSON text tolerantly: plain JSON, else the first ``` fenced block that
  parses, else the first object/array embedded in prose. Data that is already parsed (not a
  string) passes through. Failure → `default` when the config has one, else an error. The
  search through prose stops after _MAX_EMBEDDED_TRIES candidates or once the failed attempts
  have read _EMBEDDED_SCAN_FACTOR times the text, whichever comes first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from workflow_defs.transforms.errors import TransformError
from workflow_defs.transforms.limits import check_text
from workflow_defs.transforms.spec import OperationSpec, Problem, deferred, kind_of
from workflow_defs.transforms.values import to_text

MAX_PATTERNS = 50
MAX_PATTERN_CHARS = 1000
MAX_REPEAT = 1000
_BASE_FLAGS = re.MULTILINE | re.DOTALL
_COUNTED_REPEAT = re.compile(r"\{(\d*+)(?:,(\d*+))?\}")

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


def _repeat_problem(pattern: str) -> str | None:
    """A counted repeat over MAX_REPEAT, outside escapes and character classes, or None."""
    i, end, in_class = 0, len(pattern), False
    while i < end:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            i += 1
            if pattern[i : i + 1] == "^":
                i += 1
            if pattern[i : i + 1] == "]":  # `[]…]` and `[^]…]`: that bracket is a member
                i += 1
            continue
        elif c == "{" and (m := _COUNTED_REPEAT.match(pattern, i)):
            for count in m.groups():
                if count and (len(count) > 6 or int(count) > MAX_REPEAT):
                    return (
                        f"repeat count {m.group(0)!r} at position {i} is over {MAX_REPEAT:,}; "
                        f"match fewer characters or use + / *"
                    )
            i = m.end()
            continue
        i += 1
    return None


def compile_pattern(pattern: str, flags: int) -> re.Pattern[str]:
    """The compiled pattern; ValueError with a readable reason when it is refused."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(
            f"pattern is {len(pattern):,} characters, over the {MAX_PATTERN_CHARS:,}-character "
            f"limit"
        )
    if problem := _repeat_problem(pattern):
        raise ValueError(problem)
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    except OverflowError:
        raise ValueError(
            f"not a valid regular expression: a repeat count is over {MAX_REPEAT:,}"
        ) from None
    except RecursionError:
        raise ValueError("not a valid regular expression: groups nest too deeply") from None


def _check_regex(config: Mapping[str, Any], at_load: bool) -> list[Problem]:
    found: list[Problem] = []
    group = config.get("group")
    if isinstance(group, int) and group < 0:
        found.append(("config.group", f"must be 0 or more (got {group})"))
        group = None
    if deferred(config.get("patterns"), at_load):
        return found
    patterns = _patterns(config)
    if len(patterns) > MAX_PATTERNS:
        found.append(("config.patterns", f"has {len(patterns)} patterns; at most {MAX_PATTERNS}"))
        return found
    for where, _name, pattern in patterns:
        if deferred(pattern, at_load):
            continue
        if not isinstance(pattern, str):
            found.append((where, f"must be a string (got {kind_of(pattern)})"))
            continue
        try:
            compiled = compile_pattern(pattern, _flags(config))
        except ValueError as exc:
            found.append((where, str(exc)))
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
    text = check_text("regex_extract", to_text(data))
    results: dict[str, Any] = {}
    for _where, name, pattern in _patterns(config):
        value = _extract_one(compile_pattern(pattern, _flags(config)), text, config)
        if name is None:
            return value
        results[name] = value
    return results


# --- json_parse -------------------------------------------------------------------------------

# Possessive info string: otherwise each shorter split of a long "```aaaa…" is scanned again.
_FENCE = re.compile(r"```[A-Za-z0-9_+-]*+[ \t]*+\r?\n?(.*?)```", re.DOTALL)
_MAX_EMBEDDED_TRIES = 200
_EMBEDDED_SCAN_FACTOR = 4


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
    # Each failed try reads up to where the JSON broke: "[[[…1,1,1,…" re-reads the whole text
    # from every bracket. Bound the reading, not just the tries.
    budget = _EMBEDDED_SCAN_FACTOR * len(stripped)
    for tries, m in enumerate(re.finditer(r"[\[{]", stripped)):
        if tries >= _MAX_EMBEDDED_TRIES or budget < 0:
            break
        try:
            value, _end = decoder.raw_decode(stripped, m.start())
        except json.JSONDecodeError as exc:
            budget -= exc.pos - m.start() + 1
            continue
        except (ValueError, RecursionError):
            budget -= len(stripped) - m.start()
            continue
        return value
    raise ValueError(str(first_error))


def _json_parse(data: Any, config: Mapping[str, Any]) -> Any:
    if data is None:
        return config.get("default")
    if not isinstance(data, str):
        return data  # already parsed (e.g. an llm step's `data`)
    try:
        return parse_json_text(check_text("json_parse", data))
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
