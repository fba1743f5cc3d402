"""Prompt templates: `{{include:…}}` expansion at load, `${var}` rendering at run.

Two phases, on purpose:
- `expand_includes` reads files (load time, gateway/worker side) and produces one text per
  template that goes into the definition snapshot, so a run replays identically after the files
  change. Includes resolve relative to the including file, at most 10 deep, and never leave
  PROMPTS_DIR; a missing or cyclic include is a definition error. The expanded text is capped
  at MAX_PROMPT_CHARS, and each file is expanded once per template, so a file that includes
  another many times over can't multiply into gigabytes.
- `render_prompt` is pure (runs in the workflow): one pass of `${…}` substitution over the
  template text. Substituted data is never scanned again, so data that looks like a directive
  (`{{include:/etc/passwd}}`, `${input.secret}`) stays literal text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.payload_limits import ACTIVITY_INPUT_LIMIT
from workflow_defs.references import (
    REF_PATTERN,
    ROOTS,
    ReferenceSyntaxError,
    Resolver,
    format_path,
    is_missing,
    parse_path,
    ref_path,
    to_text,
    walk,
)

INCLUDE_PATTERN = re.compile(r"\{\{\s*include\s*:\s*([^}\s]+)\s*\}\}")
MAX_INCLUDE_DEPTH = 10
MAX_PROMPT_CHARS = 256 * 1024  # one template with its includes expanded
MAX_PROMPT_PATH_CHARS = 1024
# A rendered prompt is handed to an activity, and the interpreter refuses activity input over
# ACTIVITY_INPUT_LIMIT bytes anyway: past this many characters substitution stops, so a
# template that repeats a large value many times can't build an unbounded string first.
MAX_RENDERED_PROMPT_CHARS = ACTIVITY_INPUT_LIMIT
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PromptError(ValueError):
    pass


def resolve_prompt_path(prompts_dir: Path, relative: str, *, base: Path | None = None) -> Path:
    """Absolute path of a template, refusing anything outside prompts_dir."""
    root = prompts_dir.resolve()
    if len(relative) > MAX_PROMPT_PATH_CHARS:
        raise PromptError(
            f"prompt path is {len(relative):,} characters, over the "
            f"{MAX_PROMPT_PATH_CHARS:,}-character limit"
        )
    if _CONTROL.search(relative):
        raise PromptError(f"prompt path {relative!r} contains a control character")
    if Path(relative).is_absolute():
        raise PromptError(f"prompt path {relative!r} must be relative to PROMPTS_DIR")
    try:
        candidate = ((base or root) / relative).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise PromptError(f"prompt path {relative!r} cannot be resolved: {exc}") from None
    if candidate != root and root not in candidate.parents:
        raise PromptError(f"prompt path {relative!r} points outside PROMPTS_DIR")
    return candidate


def expand_includes(prompts_dir: Path, relative: str) -> str:
    """Text of the template `relative` with every include inlined, recursively."""
    path = resolve_prompt_path(prompts_dir, relative)
    return _Expander(prompts_dir).expand(path, [])[0]


class _Expander:
    def __init__(self, prompts_dir: Path) -> None:
        self.prompts_dir = prompts_dir
        self.root = prompts_dir.resolve()
        # path → (expanded text, longest include chain below it). A file that expanded once
        # expands the same way from anywhere, as long as the chain still fits the depth limit.
        self.done: dict[Path, tuple[str, int]] = {}

    def _shown(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def expand(self, path: Path, stack: list[Path]) -> tuple[str, int]:
        known = self.done.get(path)
        if known is not None and len(stack) + known[1] < MAX_INCLUDE_DEPTH:
            return known
        shown = self._shown(path)
        if path in stack:
            chain = " → ".join(self._shown(p) for p in [*stack, path])
            raise PromptError(f"cyclic prompt include: {chain}")
        if len(stack) >= MAX_INCLUDE_DEPTH:
            raise PromptError(f"prompt includes nest deeper than {MAX_INCLUDE_DEPTH} at {shown}")
        where = f" (included from {self._shown(stack[-1])})" if stack else ""
        try:
            if not path.is_file():
                raise PromptError(f"prompt template {shown!r} not found under PROMPTS_DIR{where}")
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PromptError(
                f"prompt template {shown!r} cannot be read{where}: {exc.strerror or exc}"
            ) from None
        except UnicodeDecodeError:
            raise PromptError(f"prompt template {shown!r} is not UTF-8 text{where}") from None
        self._check_size(shown, len(text))
        height = 0
        included = 0

        def _include(m: re.Match[str]) -> str:
            nonlocal height, included
            target = resolve_prompt_path(self.prompts_dir, m.group(1), base=path.parent)
            body, below = self.expand(target, [*stack, path])
            height = max(height, below + 1)
            included += len(body)
            self._check_size(shown, len(text) + included)
            return body

        expanded = INCLUDE_PATTERN.sub(_include, text)
        self._check_size(shown, len(expanded))
        self.done[path] = (expanded, height)
        return expanded, height

    @staticmethod
    def _check_size(shown: str, size: int) -> None:
        if size > MAX_PROMPT_CHARS:
            raise PromptError(
                f"prompt template {shown!r} is over {MAX_PROMPT_CHARS:,} characters with its "
                f"includes expanded (the limit)"
            )


def placeholders(template: str) -> list[str]:
    """Raw `${…}` expressions in a template, for load-time checks."""
    return [ref_path(m) for m in REF_PATTERN.finditer(template)]


def check_placeholders(template: str, variables: Mapping[str, Any]) -> list[str]:
    """Placeholders that can never resolve: neither a variable nor an input/steps/context ref.

    Inline prompts pass through here at load, so this is also where their size is capped.
    """
    if len(template) > MAX_PROMPT_CHARS:
        return [
            f"the prompt is {len(template):,} characters, over the {MAX_PROMPT_CHARS:,}-"
            f"character limit"
        ]
    problems = []
    for raw in placeholders(template):
        try:
            path = parse_path(raw)
        except ReferenceSyntaxError as exc:
            problems.append(str(exc))
            continue
        head = path[0]
        if isinstance(head, str) and (head in variables or head in ROOTS):
            continue
        problems.append(f"${{{raw}}} is neither a variable of this step nor a reference")
    return problems


def render_prompt(template: str, variables: Mapping[str, Any], resolver: Resolver) -> str:
    """One pass of substitution; `variables` are already-resolved values."""
    budget = MAX_RENDERED_PROMPT_CHARS

    def _sub(m: re.Match[str]) -> str:
        nonlocal budget
        if budget < 0:
            return ""  # already too large for any activity: the interpreter rejects it
        path = parse_path(ref_path(m))
        head = path[0]
        if isinstance(head, str) and head in variables:
            value = walk(variables[head], path[1:])
            if is_missing(value):
                resolver.warnings.append(f"prompt variable ${{{format_path(path)}}} is not set")
                return ""
        else:
            value = resolver.lookup(path)
            if is_missing(value):
                return ""
        text = "" if value is None else to_text(value)
        budget -= len(text)
        return text

    return REF_PATTERN.sub(_sub, template)
