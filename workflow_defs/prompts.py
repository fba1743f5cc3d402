"""Prompt templates (DESIGN §3.3): `{{include:…}}` expansion at load, `${var}` rendering at run.

Two phases, on purpose:
- `expand_includes` reads files (load time, gateway/worker side) and produces one text per
  template that goes into the definition snapshot, so a run replays identically after the files
  change. Includes resolve relative to the including file, at most 10 deep, and never leave
  PROMPTS_DIR; a missing or cyclic include is a definition error.
- `render_prompt` is pure (runs in the workflow): one pass of `${…}` substitution over the
  template text. Substituted data is never scanned again, so data that looks like a directive
  (`{{include:/etc/passwd}}`, `${input.secret}`) stays literal text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workflow_defs.references import (
    REF_PATTERN,
    ROOTS,
    ReferenceSyntaxError,
    Resolver,
    format_path,
    is_missing,
    parse_path,
    to_text,
    walk,
)

INCLUDE_PATTERN = re.compile(r"\{\{\s*include\s*:\s*([^}\s]+)\s*\}\}")
MAX_INCLUDE_DEPTH = 10


class PromptError(ValueError):
    pass


def resolve_prompt_path(prompts_dir: Path, relative: str, *, base: Path | None = None) -> Path:
    """Absolute path of a template, refusing anything outside prompts_dir."""
    root = prompts_dir.resolve()
    if Path(relative).is_absolute():
        raise PromptError(f"prompt path {relative!r} must be relative to PROMPTS_DIR")
    candidate = ((base or root) / relative).resolve()
    if candidate != root and root not in candidate.parents:
        raise PromptError(f"prompt path {relative!r} points outside PROMPTS_DIR")
    return candidate


def expand_includes(prompts_dir: Path, relative: str) -> str:
    """Text of the template `relative` with every include inlined, recursively."""
    path = resolve_prompt_path(prompts_dir, relative)
    return _expand(prompts_dir, path, stack=[])


def _expand(prompts_dir: Path, path: Path, stack: list[Path]) -> str:
    root = prompts_dir.resolve()
    shown = path.relative_to(root).as_posix()
    if path in stack:
        chain = " → ".join(p.relative_to(root).as_posix() for p in [*stack, path])
        raise PromptError(f"cyclic prompt include: {chain}")
    if len(stack) >= MAX_INCLUDE_DEPTH:
        raise PromptError(f"prompt includes nest deeper than {MAX_INCLUDE_DEPTH} at {shown}")
    if not path.is_file():
        where = f" (included from {stack[-1].relative_to(root).as_posix()})" if stack else ""
        raise PromptError(f"prompt template {shown!r} not found under PROMPTS_DIR{where}")
    text = path.read_text(encoding="utf-8")

    def _include(m: re.Match[str]) -> str:
        target = resolve_prompt_path(prompts_dir, m.group(1), base=path.parent)
        return _expand(prompts_dir, target, [*stack, path])

    return INCLUDE_PATTERN.sub(_include, text)


def placeholders(template: str) -> list[str]:
    """Raw `${…}` expressions in a template, for load-time checks."""
    return [m.group(1) for m in REF_PATTERN.finditer(template)]


def check_placeholders(template: str, variables: Mapping[str, Any]) -> list[str]:
    """Placeholders that can never resolve: neither a variable nor an input/steps/context ref."""
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

    def _sub(m: re.Match[str]) -> str:
        path = parse_path(m.group(1))
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
        return "" if value is None else to_text(value)

    return REF_PATTERN.sub(_sub, template)
