"""docker-compose.temporal.yml is for users; CI has no Docker engine, so it is checked by parsing."""

from __future__ import annotations

from pathlib import Path

import yaml

from core.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def test_compose_file_defines_the_production_like_stack() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.temporal.yml").read_text())
    services = compose["services"]
    assert {
        "temporal",
        "temporal-ui",
        "temporal-db",
        "app-db",
        "redis",
        "gateway",
        "worker",
    } <= set(services)
    assert services["worker"]["command"] == ["llmflow", "worker"]
    assert services["gateway"]["command"][:2] == ["llmflow", "api"]
    assert (
        "8000:8000" in services["gateway"]["ports"] and "7233:7233" in services["temporal"]["ports"]
    )
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert (REPO / services["worker"]["build"] / "Dockerfile").exists()


def test_compose_only_sets_configuration_names_the_service_reads() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.temporal.yml").read_text())
    known = {name.upper() for name in Settings.model_fields} | {"GOOGLE_SERVICES_API_KEY"}
    for name in ("worker", "gateway"):
        env = compose["services"][name]["environment"]
        unknown = sorted(set(env) - known)
        assert unknown == [], f"{name} sets variables llmflow does not read: {unknown}"
        # Secrets are passed through from the caller's environment, never written here.
        for key in ("OPENROUTER_API_KEY", "LLM_WEBHOOK_SECRET"):
            if key in env:
                assert str(env[key]).startswith("${")
