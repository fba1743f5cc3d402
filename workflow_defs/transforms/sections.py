"""The `markdown_sections` transform: Markdown → `{snake_case_heading: section text}`.

- Every ATX heading of level 1 to 3 (`#`, `##`, `###`; `##Title` without the space is read too,
  as LLMs write it) opens a section. Its text runs up to the next heading of the same or a
  higher level, so a `##` section includes its `###` subsections, verbatim; `####` and deeper
  never split. Text before the first heading belongs to no section.
- Keys: the heading lower-cased, a leading number (`1.`, `2)`) dropped, every run of characters
  that are not letters or digits turned into one `_` (`Day-by-Day Simulation` →
  `day_by_day_simulation`). A heading seen twice gets both texts, joined by a blank line.
- Headings inside fenced code blocks are text. A reply wrapped whole in one ``` fence is
  unwrapped first.
- `sections` (optional list): only those keys, in that order (given as keys or as headings,
  normalised the same way); a section the text lacks gets `default`, which is "" unless set,
  so the result's shape never depends on the reply.
- None gives `{}` (or every expected key at its default); an llm step's whole output object is
  accepted in place of its `content`. Other non-string data is an error.

Linear in the input: one pass over the lines, string methods and a single-quantifier regex
only, so adversarial text (huge headings, runs of spaces or `#`) can't make it slow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from workflow_defs.transforms.errors import TransformError
from workflow_defs.transforms.spec import OperationSpec, Problem, deferred, kind_of

MAX_SPLIT_LEVEL = 3
_NOT_WORD = re.compile(r"[\W_]+")
_FENCE_CHARS = "`~"


def section_key(heading: str) -> str:
    text = heading.strip()
    first, _, rest = text.partition(" ")
    if rest and first[-1:] in (".", ")") and first[:-1].isdigit():
        text = rest
    return _NOT_WORD.sub("_", text.lower()).strip("_")


def _fence(line: str) -> tuple[str, int, str] | None:
    """(fence character, run length, text after the run) when the line opens or closes one."""
    stripped = line.lstrip(" ")
    if len(line) - len(stripped) > 3 or not stripped or stripped[0] not in _FENCE_CHARS:
        return None
    after = stripped.lstrip(stripped[0])
    run = len(stripped) - len(after)
    return (stripped[0], run, after) if run >= 3 else None


def _heading(line: str) -> tuple[int, str] | None:
    """(level, title) of a heading that splits; deeper headings and other lines give None."""
    stripped = line.lstrip(" ")
    if len(line) - len(stripped) > 3 or not stripped.startswith("#"):
        return None
    rest = stripped.lstrip("#")
    level = len(stripped) - len(rest)
    if level > MAX_SPLIT_LEVEL or not (rest == "" or rest[0] in " \t" or level >= 2):
        return None
    title = rest.strip()
    closed = title.rstrip("#")
    if closed != title and (closed == "" or closed[-1] in " \t"):
        title = closed.rstrip()  # the optional closing sequence: `## Title ##`
    return level, title


def _unwrap(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    if end - start < 2:
        return lines
    opening, closing = _fence(lines[start]), _fence(lines[end - 1])
    if (
        opening is None
        or closing is None
        or closing[0] != opening[0]
        or closing[1] < opening[1]
        or closing[2].strip()
    ):
        return lines
    return lines[start + 1 : end - 1]


def split_sections(text: str) -> dict[str, str]:
    lines = _unwrap(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    # Sections in heading order as [key, first body line, end line]; `open_` holds the ones
    # still running, innermost last.
    found: list[list[Any]] = []
    open_: list[tuple[int, int]] = []  # (level, index into found)
    fence: tuple[str, int] | None = None
    for number, line in enumerate(lines):
        marker = _fence(line)
        if fence is not None:
            if marker and marker[0] == fence[0] and marker[1] >= fence[1] and not marker[2].strip():
                fence = None
            continue
        if marker is not None:
            fence = (marker[0], marker[1])
            continue
        heading = _heading(line)
        if heading is None:
            continue
        level, title = heading
        while open_ and open_[-1][0] >= level:
            found[open_.pop()[1]][2] = number
        open_.append((level, len(found)))
        found.append([section_key(title), number + 1, len(lines)])
    bodies: dict[str, list[str]] = {}
    for key, start, end in found:
        if key:
            body = "\n".join(lines[start:end]).strip()
            parts = bodies.setdefault(key, [])
            if body:
                parts.append(body)
    return {key: "\n\n".join(parts) for key, parts in bodies.items()}


def _check_sections(config: Mapping[str, Any], at_load: bool) -> list[Problem]:
    wanted = config.get("sections")
    if not isinstance(wanted, list) or deferred(wanted, at_load):
        return []
    found: list[Problem] = []
    for i, name in enumerate(wanted):
        if deferred(name, at_load):
            continue
        if not isinstance(name, str):
            found.append((f"config.sections[{i}]", f"must be a string (got {kind_of(name)})"))
        elif not section_key(name):
            found.append((f"config.sections[{i}]", f"{name!r} has no letters or digits"))
    return found


def _markdown_sections(data: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(data, Mapping) and isinstance(data.get("content"), str):
        data = data["content"]  # an llm step's whole output was passed instead of its text
    if data is None:
        data = ""
    if not isinstance(data, str):
        raise TransformError(
            "markdown_sections", "input", f"must be markdown text (got {kind_of(data)})"
        )
    sections = split_sections(data)
    wanted = config.get("sections")
    if wanted is None:
        return sections
    default = config.get("default", "")
    keys = [section_key(name) for name in wanted]
    return {key: sections.get(key, default) for key in keys}


SPECS = [
    OperationSpec(
        "markdown_sections",
        _markdown_sections,
        {"sections": ("array",)},
        check=_check_sections,
    ),
]
