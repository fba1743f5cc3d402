"""Tolerant markdown reading for `markdown_to_json`, and its generic `sections` schema.

The `sections` schema (also used when `schema` is omitted) returns the heading tree:
  `{"content": <text before the first heading>, "sections": [node, ...]}` where each node is
  `{"heading", "level", "content", "fields", "items", "sections"}`: `content` is the body text
  (field lines included, verbatim), `fields` maps each `**Label**: value` line to its value
  with the label in snake_case (`**Fit Score**: 85` → `fit_score: "85"`), `items` lists the
  body's bullet points that are not fields, `sections` holds the deeper headings.

Parsing is forgiving by design, since the input is usually an LLM reply: CRLF, code fences
around the reply, `**Label:**` / `**Label**:` / `- **Label**: …` / `Label: …` (known labels
only), values continued on following lines, `N/A`-style placeholders read as missing. Text that
isn't markdown yields empty results, never an exception.

This runs inside the workflow on LLM text, so every pattern here is linear in the line: each
quantifier next to another that could take the same characters is possessive (`*+`, `++`) or
the split is done in code, and no unanchored search can rescan a long run from every start.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_HEADING_MARK = re.compile(r" {0,3}(#{1,6})")  # the rest of a heading line is read in code
_FENCE_LINE = re.compile(r"^\s*+(?:```|~~~)")
_RULE = re.compile(r"^\s{0,3}([-*_])(?:\s*+\1){2,}+\s*+$")  # --- *** ___
_BULLET = re.compile(r"^\s*+(?:[-*+•]|\d++[.)])\s+")
# A label never starts or ends with whitespace (the lazy label would have matched without it),
# so it is spelled that way: then only a label ending on a visible character is followed by a
# whitespace scan, and a line of spaces is read once instead of sixty times over.
_BOLD_FIELD = re.compile(
    r"^\s*+(?:[-*+•]\s++|\d++[.)]\s++)?"
    r"(?:\*{1,2}|__)\s*+(?P<label>[^*_:\s](?:[^*_:\n]{0,58}?[^*_:\s])?)\s*+"
    r"(?::\s*+(?:\*{1,2}|__)|(?:\*{1,2}|__)\s*+[:\-\u2013\u2014])"
    r"\s*(?P<value>.*)$"
)
_PLAIN_FIELD = re.compile(
    r"^\s*+(?:[-*+•]\s++|\d++[.)]\s++)?"
    r"(?P<label>[A-Za-z0-9](?:[\w /&'()-]{0,39}?[\w/&'()-])?)\s*+:\s*(?P<value>.*)$"
)
# Character classes exclude the opening delimiters so that a failed match stops at the next
# bracket: "[[[[…" or "<http:<http:…" in a long reply stays linear, not quadratic.
_LINK = re.compile(r"\[([^\[\]\n]*+)\]\(([^()\s]*+)[^()\n]*+\)")
_AUTOLINK = re.compile(r"<((?:https?|mailto|tel):[^<>\s]+)>")
_PLACEHOLDERS = frozenset(
    {
        "",
        "n/a",
        "na",
        "none",
        "null",
        "unknown",
        "not available",
        "not applicable",
        "-",
        "\u2014",
        "\u2013",
        "tbd",
        "not provided",
        "not listed",
        "not specified",
    }
)


@dataclass
class Block:
    level: int
    title: str
    lines: list[str] = field(default_factory=list)


def read_heading(line: str) -> tuple[int, str] | None:
    """(level, raw title) of an ATX heading line, else None.

    One to six `#` after at most three spaces, then spaces/tabs (or, from `##` on, the title
    right away: `##Title`), then the title; a closing run of `#` after a space is dropped.
    Done in code: as one regex the lazy title and the trailing-space groups backtrack
    quadratically on a heading followed by a long run of spaces.
    """
    m = _HEADING_MARK.match(line)
    if m is None:
        return None
    level = len(m.group(1))
    rest = line[m.end() :]
    if rest[:1] in (" ", "\t"):
        rest = rest.lstrip(" \t")
    elif level < 2 or not rest or rest[0] == "#" or rest[0].isspace():
        return None
    title = rest.rstrip(" \t")
    unclosed = title.rstrip("#")
    if len(unclosed) < len(title) and unclosed[-1:] in (" ", "\t"):
        title = unclosed.rstrip(" \t")
    return level, title


def split_blocks(text: str) -> tuple[list[str], list[Block]]:
    """(lines before the first heading, one Block per heading with the lines under it)."""
    preamble: list[str] = []
    blocks: list[Block] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if _FENCE_LINE.match(line):
            continue  # LLMs wrap replies in ```markdown fences; the fence itself carries nothing
        heading = read_heading(line)
        if heading:
            blocks.append(Block(heading[0], clean_inline(heading[1])))
        elif blocks:
            blocks[-1].lines.append(line)
        else:
            preamble.append(line)
    return preamble, blocks


def normalize_label(label: str) -> str:
    # `[^()]`, not `[^)]`: a scan from each "(" stops at the next one, so "((((…" is linear.
    text = re.sub(r"\([^()]*+\)", " ", label.lower()).replace("&", " and ")
    text = re.sub(r"[^a-z0-9/ ]+", " ", text)
    return " ".join(text.split())


def snake(label: str) -> str:
    return normalize_label(label).replace("/", "_").replace(" ", "_")


Canon = Callable[[str], str | None]  # normalized label → field name, None when unknown


@dataclass
class Fields:
    values: dict[str, list[str]] = field(default_factory=dict)  # field → raw lines, first wins
    other: list[str] = field(default_factory=list)  # body lines that belong to no field

    def has(self, name: str) -> bool:
        return name in self.values

    def text(self, name: str) -> str | None:
        return field_text(self.values.get(name))

    def items(self, name: str) -> list[str]:
        return field_list(self.values.get(name))

    def raw(self, name: str) -> str:
        return " ".join(line.strip() for line in self.values.get(name, []) if line.strip())


def _match_field(line: str, canon: Canon | None) -> tuple[str, str] | None:
    m = _BOLD_FIELD.match(line)
    if m:
        label = normalize_label(m.group("label"))
        if not label:
            return None
        name = canon(label) if canon else None
        return (name or label.replace("/", "_").replace(" ", "_")), m.group("value")
    if canon is not None:
        m = _PLAIN_FIELD.match(line)
        if m and (name := canon(normalize_label(m.group("label")))):
            return name, m.group("value")
    return None


def parse_fields(lines: list[str], canon: Canon | None = None) -> Fields:
    """Read `**Label**: value` lines (and, for known labels, `Label: value`) with their
    continuation lines. A blank line ends a value unless nothing has been read for it yet;
    bullet lines continue a value only when its label line had none (a list under a label)."""
    out = Fields()
    current: list[str] | None = None
    for line in lines:
        if _RULE.match(line):
            current = None
            out.other.append(line)
            continue
        found = _match_field(line, canon)
        if found:
            name, value = found
            current = [value]
            if name not in out.values:  # a repeated label is read but dropped: first wins
                out.values[name] = current
            continue
        if current is not None and not line.strip():
            if any(part.strip() for part in current):
                current = None
            continue
        if current is not None and _BULLET.match(line) and current[0].strip():
            current = None  # bullets after an inline value are items of their own, not its tail
        if current is not None:
            current.append(line)
        else:
            out.other.append(line)
    return out


def clean_inline(text: str) -> str:
    """Markdown inline noise off: emphasis markers, links → their text, extra whitespace."""
    text = _AUTOLINK.sub(r"\1", text)
    text = _LINK.sub(lambda m: m.group(1) or m.group(2), text)
    text = text.replace("**", "").replace("__", "").replace("`", "")
    text = " ".join(text.split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "*_":
        text = text[1:-1].strip()
    return text


def field_text(lines: list[str] | None) -> str | None:
    if not lines:
        return None
    parts = [clean_inline(_BULLET.sub("", line)) for line in lines]
    text = " ".join(p for p in parts if p)
    return None if text.lower().rstrip(".") in _PLACEHOLDERS else text


def field_list(lines: list[str] | None) -> list[str]:
    """A list value: bullet lines under the label, else the first line split on , ; |"""
    if not lines:
        return []
    bullets = [line for line in lines[1:] if _BULLET.match(line)]
    if bullets and not lines[0].strip():
        raw = [_BULLET.sub("", line) for line in bullets]
    else:
        text = " ".join(line.strip() for line in lines if line.strip())
        raw = re.split(r"[,;|]", text)  # clean_inline trims; `\s*` around is quadratic
    items = [clean_inline(item).strip(" .") for item in raw]
    return [item for item in items if item and item.lower() not in _PLACEHOLDERS]


def first_url(lines: list[str] | None) -> str | None:
    """The link target when the value is a markdown link, else the cleaned text."""
    if not lines:
        return None
    joined = " ".join(lines)
    m = _LINK.search(joined)
    if m and m.group(2).startswith(("http://", "https://", "www.")):
        return m.group(2)
    return field_text(lines)


# --- the generic `sections` schema ------------------------------------------------------------


def _section_node(block: Block) -> dict[str, Any]:
    fields = parse_fields(block.lines)
    items = [clean_inline(_BULLET.sub("", ln)) for ln in fields.other if _BULLET.match(ln)]
    return {
        "heading": block.title,
        "level": block.level,
        "content": "\n".join(block.lines).strip(),
        "fields": {name: field_text(lines) for name, lines in fields.values.items()},
        "items": items,
        "sections": [],
    }


def parse_sections(text: str) -> dict[str, Any]:
    preamble, blocks = split_blocks(text)
    root: dict[str, Any] = {"content": "\n".join(preamble).strip(), "sections": []}
    stack: list[tuple[int, dict[str, Any]]] = [(0, root)]
    for block in blocks:
        node = _section_node(block)
        while stack[-1][0] >= block.level:
            stack.pop()
        stack[-1][1]["sections"].append(node)
        stack.append((block.level, node))
    return root
