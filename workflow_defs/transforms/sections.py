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

Linear in the input: one pass over the lines that can open a heading or a fence, string
methods and regexes without nested quantifiers, so adversarial text (huge headings, runs of
spaces or `#`, a million headings) can't make it slow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from workflow_defs.transforms.errors import TransformError
from workflow_defs.transforms.limits import check_text
from workflow_defs.transforms.spec import OperationSpec, Problem, deferred, kind_of

MAX_SPLIT_LEVEL = 3
_NOT_WORD = re.compile(r"[\W_]+")
# A line that can start a heading or a code fence: the marker run, then the rest of the line.
# Sequential quantifiers only, and nothing after the last one, so it never backtracks.
_LINE_MARKER = re.compile(r"^ {0,3}(#+|`{3,}|~{3,})([^\n]*)", re.MULTILINE)


def section_key(heading: str) -> str:
    text = heading.strip()
    first, _, rest = text.partition(" ")
    if rest and first[-1:] in (".", ")") and first[:-1].isdigit():
        text = rest
    return _NOT_WORD.sub("_", text.lower()).strip("_")


def _title(after_hashes: str) -> str:
    title = after_hashes.strip()
    closed = title.rstrip("#")
    if closed != title and (closed == "" or closed[-1] in " \t"):
        title = closed.rstrip()  # the optional closing sequence: `## Title ##`
    return title


def _fence(line: str) -> tuple[str, str] | None:
    """(fence run, text after it) when the line opens or closes a code fence."""
    m = _LINE_MARKER.match(line)
    if m is None or m.group(1)[0] == "#":
        return None
    return m.group(1), m.group(2)


def _unwrap(text: str) -> str:
    body = text.strip()
    first_end, last_start = body.find("\n"), body.rfind("\n") + 1
    if first_end < 0:
        return text
    opening, closing = _fence(body[:first_end]), _fence(body[last_start:])
    if (
        opening is None
        or closing is None
        or closing[0][0] != opening[0][0]
        or len(closing[0]) < len(opening[0])
        or closing[1].strip()
    ):
        return text
    return body[first_end + 1 : last_start - 1]


def split_sections(text: str) -> dict[str, str]:
    text = _unwrap(text.replace("\r\n", "\n").replace("\r", "\n"))
    # One entry per heading, in heading order, kept in flat lists of str/int: a container per
    # heading would make the garbage collector rescan them all as they pile up.
    keys: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    open_levels: list[int] = []  # sections still running, innermost last
    open_index: list[int] = []
    key_of: dict[str, str] = {}  # heading line (after the #s) → key
    fence = ""  # the open code fence's run, "" outside one
    for m in _LINE_MARKER.finditer(text):
        marker, after = m.group(1, 2)
        if fence:
            if marker[0] == fence[0] and len(marker) >= len(fence) and not after.strip():
                fence = ""
            continue
        if marker[0] != "#":
            fence = marker
            continue
        level = len(marker)
        if level > MAX_SPLIT_LEVEL or not (after == "" or after[0] in " \t" or level >= 2):
            continue
        key = key_of.get(after)
        if key is None:
            key = key_of[after] = section_key(_title(after))
        while open_levels and open_levels[-1] >= level:
            open_levels.pop()
            ends[open_index.pop()] = m.start()
        open_levels.append(level)
        open_index.append(len(keys))
        keys.append(key)
        starts.append(m.end() + 1)
        ends.append(len(text))
    bodies: dict[str, str] = {}
    repeated: dict[str, list[str]] = {}  # only keys seen more than once get a list
    for key, start, end in zip(keys, starts, ends, strict=True):
        if not key:
            continue
        body = text[start:end].strip()
        if key not in bodies:
            bodies[key] = body
        elif body:
            repeated.setdefault(key, [bodies[key]] if bodies[key] else []).append(body)
    for key, parts in repeated.items():
        bodies[key] = "\n\n".join(parts)
    return bodies


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
    sections = split_sections(check_text("markdown_sections", data))
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
