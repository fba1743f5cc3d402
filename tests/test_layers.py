"""The layers import downwards only: api/, core/ and workflow_defs/ never import the worker's
packages (activities/, worker/), workflow_defs/ and core/ never import the gateway (api/), and
the top of the graph, core/cli/ (the `llmflow` command, `make dev`'s stack, the Python client),
is imported by nothing but tests and the bench.

Read from the source with ast, never by importing the modules, so an import inside a function
(or one that would fail at import time) is caught as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The top of the import graph: the CLI runs the worker and the gateway, `make dev` builds both,
# the client speaks the gateway's own request and response models.
TOP = "core/cli/"

FORBIDDEN: dict[str, frozenset[str]] = {
    "api": frozenset({"activities", "worker", "core.cli"}),
    "core": frozenset({"activities", "worker", "api", "core.cli"}),
    "workflow_defs": frozenset({"activities", "worker", "api", "core.cli"}),
    "worker": frozenset({"core.cli"}),
    "activities": frozenset({"core.cli"}),
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
            # `from pkg import sub` may import a submodule: judge the package and each name.
            found.append((node.lineno, target))
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
    return found


def layer_modules() -> list[Path]:
    files: list[Path] = []
    for layer in FORBIDDEN:
        for path in sorted((ROOT / layer).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(TOP) or "migrations/versions" in rel:
                continue
            files.append(path)
    return files


def crosses(target: str, forbidden: frozenset[str]) -> bool:
    return any(target == f or target.startswith(f + ".") for f in forbidden)


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
        out.extend((rel, line, target) for line, target in imports if crosses(target, forbidden))
    return out


def test_layers_import_downwards_only() -> None:
    unexpected = [f"{rel}:{line} imports {target}" for rel, line, target in crossings()]
    assert not unexpected, (
        "a lower layer imports a higher one (api/, core/ and workflow_defs/ must not import "
        "activities/ or worker/; core/ and workflow_defs/ must not import api/; only tests and "
        "the bench import core/cli/) — move the shared code down to core/:\n  "
        + "\n  ".join(unexpected)
    )


def test_the_walk_covers_every_layer() -> None:
    scanned = {p.relative_to(ROOT).as_posix() for p in layer_modules()}
    assert {
        "api/health_checks.py",
        "core/ssrf.py",
        "core/step_outputs.py",
        "workflow_defs/validation.py",
        "worker/interpreter.py",
        "activities/llm/activity.py",
    } <= scanned
    assert not {p for p in scanned if p.startswith(TOP)}
    # The CLI package is there to be skipped: a rename would quietly scan nothing.
    assert (ROOT / TOP / "main.py").is_file()


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import activities.cache\n", "api.x", ["activities.cache"]),
        ("from activities import ssrf\n", "core.x", ["activities", "activities.ssrf"]),
        (
            "def f():\n    from worker.app import build\n",
            "core.x",
            ["worker.app", "worker.app.build"],
        ),
        ("from ..auth import Principal\n", "api.routers.cache", ["api.auth", "api.auth.Principal"]),
        ("from . import deps\n", "api.routers.cache", ["api.routers", "api.routers.deps"]),
        ("from .. import auth\n", "api.routers.cache", ["api", "api.auth"]),
    ],
)
def test_imports_are_read_wherever_they_sit(source: str, module: str, expected: list[str]) -> None:
    assert [target for _, target in imported_modules(source, module)] == expected


@pytest.mark.parametrize(
    ("source", "module", "layer", "crossing"),
    [
        ("from core import cli\n", "core.db", "core", True),
        ("from core.cli.client import LlmflowClient\n", "api.main", "api", True),
        ("import core.cli.main\n", "worker.main", "worker", True),
        ("from api.schemas import JobView\n", "core.db", "core", True),
        ("from core import client_ids\n", "api.main", "api", False),  # a prefix, not the package
        ("from core.step_outputs import LlmUsage\n", "workflow_defs.x", "workflow_defs", False),
    ],
)
def test_what_counts_as_crossing(source: str, module: str, layer: str, crossing: bool) -> None:
    targets = [target for _, target in imported_modules(source, module)]
    assert any(crosses(t, FORBIDDEN[layer]) for t in targets) is crossing
