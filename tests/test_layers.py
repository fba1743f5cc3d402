"""The layers import downwards only: api/, core/ and workflow_defs/ never import the worker's
packages (activities/, worker/), and workflow_defs/ never imports the gateway (api/).

Read from the source with ast, never by importing the modules, so an import inside a function
(or one that would fail at import time) is caught as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The top of the import graph: the CLI runs the worker and the gateway, `make dev` builds both.
TOP_LEVEL = {"core/cli.py", "core/cli_jobs.py", "core/devstack.py", "core/watch.py"}

FORBIDDEN: dict[str, frozenset[str]] = {
    "api": frozenset({"activities", "worker"}),
    "core": frozenset({"activities", "worker"}),
    "workflow_defs": frozenset({"activities", "worker", "api"}),
}

# (module, imported module) pairs that still cross a layer, each with the reason. An entry
# that no longer matches an import fails the test, so the list only shrinks.
KNOWN: dict[tuple[str, str], str] = {
    (path, target): "the activities' output models name the keys `${steps.<id>.<key>}` may "
    "reach; they are pure pydantic, imported on first use (move them to core/ to drop this)"
    for path, target in [
        ("workflow_defs/validation.py", "activities.external_api_models"),
        ("workflow_defs/validation.py", "activities.http_step_models"),
        ("workflow_defs/validation.py", "activities.llm.models"),
        ("workflow_defs/validation.py", "activities.webhook_step_models"),
    ]
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(
    source: str, module: str, *, is_package: bool = False
) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in `source`, wherever it sits."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # `from pkg import sub` may import a submodule: judge the package it comes from.
            found.append((node.lineno, target))
    return found


def layer_modules() -> list[Path]:
    files: list[Path] = []
    for layer in FORBIDDEN:
        for path in sorted((ROOT / layer).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in TOP_LEVEL or "migrations/versions" in rel:
                continue
            files.append(path)
    return files


def crossings() -> list[tuple[str, int, str]]:
    out: list[tuple[str, int, str]] = []
    for path in layer_modules():
        rel = path.relative_to(ROOT).as_posix()
        forbidden = FORBIDDEN[rel.split("/")[0]]
        imports = imported_modules(
            path.read_text(encoding="utf-8"),
            _module_name(path),
            is_package=path.name == "__init__.py",
        )
        for line, target in imports:
            if target.split(".")[0] in forbidden:
                out.append((rel, line, target))
    return out


def test_layers_import_downwards_only() -> None:
    found = crossings()
    unexpected = [
        f"{rel}:{line} imports {target}"
        for rel, line, target in found
        if (rel, target) not in KNOWN
    ]
    assert not unexpected, (
        "a lower layer imports a higher one (api/, core/ and workflow_defs/ must not import "
        "activities/ or worker/; workflow_defs/ must not import api/) — move the shared code "
        "to core/:\n  " + "\n  ".join(unexpected)
    )
    stale = sorted(set(KNOWN) - {(rel, target) for rel, _, target in found})
    assert not stale, f"no longer imported, drop from KNOWN: {stale}"


def test_the_walk_covers_every_layer() -> None:
    scanned = {p.relative_to(ROOT).as_posix() for p in layer_modules()}
    assert {"api/health_checks.py", "core/ssrf.py", "workflow_defs/validation.py"} <= scanned
    assert not scanned & TOP_LEVEL


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import activities.cache\n", "api.x", "activities.cache"),
        ("from activities import ssrf\n", "core.x", "activities"),
        ("def f():\n    from worker.app import build\n", "core.x", "worker.app"),
        ("from ..auth import Principal\n", "api.routers.cache", "api.auth"),
        ("from . import deps\n", "api.routers.cache", "api.routers"),
        ("from .. import auth\n", "api.routers.cache", "api"),
    ],
)
def test_imports_are_read_wherever_they_sit(source: str, module: str, expected: str) -> None:
    assert [target for _, target in imported_modules(source, module)] == [expected]
