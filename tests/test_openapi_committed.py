"""clients/openapi.json is the gateway's OpenAPI document as the code builds it now."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from api.main import create_app
from core.cli.main import render_openapi
from core.settings import Settings

COMMITTED = Path(__file__).resolve().parents[1] / "clients" / "openapi.json"
REGENERATE = "run `make openapi` to regenerate it (and clients/typescript/schema.d.ts)"


def changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Which paths and schemas differ, to say where in one line."""
    out = []
    for section, key in (("paths", "paths"), ("schemas", "components")):
        a = old.get(key, {}) if section == "paths" else old.get(key, {}).get("schemas", {})
        b = new.get(key, {}) if section == "paths" else new.get(key, {}).get("schemas", {})
        out += [name for name in sorted(set(a) | set(b)) if a.get(name) != b.get(name)]
    return out or ["info/other"]


def test_the_committed_openapi_document_matches_the_app() -> None:
    app = create_app(Settings(environment="test", api_keys=[], database_url="sqlite://"))
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    current = app.openapi()
    if committed != current:
        pytest.fail(
            f"clients/openapi.json is stale ({', '.join(changed(committed, current))}): {REGENERATE}",
            pytrace=False,
        )
    # Byte for byte too: the TypeScript types are generated from this exact file.
    if COMMITTED.read_text(encoding="utf-8") != render_openapi():
        pytest.fail(
            f"clients/openapi.json is not formatted as generated: {REGENERATE}", pytrace=False
        )
