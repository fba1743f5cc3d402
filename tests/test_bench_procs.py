"""The benchmark's child processes read their settings back from the environment
(bench/procs.settings_env): every setting must survive the trip, or a benchmark measures a
process configured otherwise (or one that refuses to start)."""

from __future__ import annotations

import pytest

from bench.procs import settings_env
from core.settings import Settings


def test_every_setting_survives_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    given = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        api_key_budgets={"web": 20.0, "batch": 2.5},
        alert_email_to=["ops@example.com", "oncall@example.com"],
        redis_url="redis://127.0.0.1:6379/0",
    )
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in settings_env(given).items():
        monkeypatch.setenv(name, value)
    read_back = Settings(_env_file=None)  # type: ignore[call-arg]
    assert read_back.model_dump() == given.model_dump()
