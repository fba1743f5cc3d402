"""Everything a process needs to know about definitions, loaded once at start."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.contracts import ResolvedDefinition
from core.settings import Settings
from workflow_defs.loader import (
    DefinitionError,
    DefinitionRegistry,
    LoadedDefinition,
    Problem,
    load_registry,
)
from workflow_defs.schema import sub_workflow_key
from workflow_defs.services import ServiceRegistry, load_services
from workflow_defs.tree import walk_steps


@dataclass
class Catalog:
    definitions: DefinitionRegistry
    services: ServiceRegistry
    _snapshots: dict[tuple[str, str], ResolvedDefinition] = field(default_factory=dict, repr=False)

    def snapshot(self, loaded: LoadedDefinition) -> ResolvedDefinition:
        """What a job of `loaded` runs: its own snapshot plus, frozen with it, every definition
        its sub_workflow steps start (recursively). Computed once per definition."""
        key = (loaded.name, loaded.version)
        if key not in self._snapshots:
            children = {
                sub_workflow_key(cfg.workflow, cfg.version): self.snapshot(child)
                for cfg, child in _sub_workflows(self.definitions, loaded)
            }
            self._snapshots[key] = loaded.snapshot().model_copy(update={"children": children})
        return self._snapshots[key]


def load_catalog(settings: Settings) -> Catalog:
    """Raises DefinitionError (listing file + JSON path of every problem) on invalid files."""
    services = load_services(settings.workflow_defs_dir / "services.json")
    definitions = load_registry(
        settings.workflow_defs_dir, prompts_dir=settings.prompts_dir, has_service=services.has
    )
    check_sub_workflows(definitions)
    return Catalog(definitions, services)


def _sub_workflows(
    registry: DefinitionRegistry, loaded: LoadedDefinition
) -> list[tuple[Any, LoadedDefinition]]:
    found = []
    for loc in walk_steps(loaded.definition.steps):
        if loc.step.type == "sub_workflow":
            cfg = loc.step.config
            child = registry.get(cfg.workflow, cfg.version)
            if child is not None:
                found.append((cfg, child))
    return found


def check_sub_workflows(registry: DefinitionRegistry) -> None:
    """Every sub_workflow names a loaded definition, and none starts itself again."""
    problems: list[Problem] = []
    for loaded in registry.all():
        for loc in walk_steps(loaded.definition.steps):
            if loc.step.type != "sub_workflow":
                continue
            cfg = loc.step.config
            if registry.get(cfg.workflow, cfg.version) is None:
                known = registry.versions(cfg.workflow)
                hint = f" (versions: {', '.join(known)})" if known else ""
                problems.append(
                    Problem(
                        loaded.source,
                        f"{loc.json_path}.config.workflow",
                        f"no workflow {cfg.workflow!r} {cfg.version or ''}".rstrip() + hint,
                    )
                )
        cycle = _cycle_from(registry, loaded, [])
        if cycle:
            names = " → ".join(f"{d.name} {d.version}" for d in cycle)
            problems.append(Problem(loaded.source, "$.steps", f"sub_workflow cycle: {names}"))
    if problems:
        raise DefinitionError(problems)


def _cycle_from(
    registry: DefinitionRegistry, loaded: LoadedDefinition, path: list[LoadedDefinition]
) -> list[LoadedDefinition] | None:
    if any(d is loaded for d in path):
        return [*path, loaded]
    for _, child in _sub_workflows(registry, loaded):
        cycle = _cycle_from(registry, child, [*path, loaded])
        if cycle:
            return cycle
    return None
