"""Everything a process needs to know about definitions, loaded once at start."""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import Settings
from workflow_defs.loader import DefinitionRegistry, load_registry
from workflow_defs.services import ServiceRegistry, load_services


@dataclass
class Catalog:
    definitions: DefinitionRegistry
    services: ServiceRegistry


def load_catalog(settings: Settings) -> Catalog:
    """Raises DefinitionError (listing file + JSON path of every problem) on invalid files."""
    services = load_services(settings.workflow_defs_dir / "services.json")
    definitions = load_registry(
        settings.workflow_defs_dir, prompts_dir=settings.prompts_dir, has_service=services.has
    )
    return Catalog(definitions, services)
