"""The Strapi integration flows, end to end: a signed Strapi event → POST /api/v1/webhooks/strapi
→ the job triggers.json maps it to → a local fake Strapi (REST, Strapi 4 `attributes` and
Strapi 5 flat answers, bearer token checked) → the job's output.

The shipped definitions and services.json run as shipped, except that the retry delays are cut
to fractions of a second in a copy (the figures themselves are checked on the shipped files).

The committed histories of the three flows (tests/histories/, replayed by tests/test_replay.py)
are re-recorded with:

    LLMFLOW_RECORD_HISTORIES=1 .venv/bin/pytest tests/test_strapi_flows.py -k record
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import random
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.cache import ResponseCache
from activities.external_api import ExternalApiActivities, ExternalApiInput
from activities.http_errors import new_http_client
from api.main import create_app
from core.db import get_job
from core.settings import Settings
from core.webhook_signing import sign_hex
from tests import harness
from tests.api_server import serve
from tests.fakes.http_server import FakeHTTPServer, Request, Response
from tests.fakes.llm_wire import openai_chat_body
from tests.test_api_jobs import poll
from workflow_defs.catalog import load_catalog
from workflow_defs.services import load_services

SHIPPED_DEFS = Path(__file__).resolve().parents[1] / "workflow_defs"
FLOWS = ("deal_forecast", "deal_cleanup", "billing_calibration")
# The integration layer's RetryConfig(max_retries=3, initial_delay=1, max_delay=60,
# exponential_base=2) and CircuitBreaker(failure_threshold=5, recovery_timeout=60).
INTEGRATION_RETRY = {"max_retries": 3, "initial_delay": 1, "max_delay": 60, "exponential_base": 2}
INTEGRATION_BREAKER = {"failure_threshold": 5, "recovery_timeout": 60}

WEBHOOK_SECRET = "strapi-flows-webhook-secret-61c0"
STRAPI_TOKEN = "strapi-api-token-d41f8e2b7c9a"
STRAPI_PREFIX = "/strapi/api"
CHAT = "/openrouter/api/v1/chat/completions"
WEBHOOK = "/api/v1/webhooks/strapi"

FORECAST = {
    "close_probability": 0.6,
    "expected_close_date": "2026-03-31",
    "weighted_amount": 30000,
    "risk_factors": ["budget freeze", "new decision maker"],
    "reasoning": "Proposal stage with an engaged champion; procurement is slow.",
}
SUMMARY = (
    "Forecasts for this account ran 50 high on average, missing by 150 per deal. "
    "Discount late-stage deals more before weighting them."
)


# -- a fake Strapi ------------------------------------------------------------------------------


class FakeStrapi:
    """Strapi's REST API over FakeHTTPServer: collections of entries, `filters[f][$eq]`,
    `sort=createdAt:desc`, `pagination[pageSize]`, POST `{"data": {...}}`, DELETE by id (Strapi
    4, answers the entry) or documentId (Strapi 5, answers 204). Answers in the v4 shape
    `{"data": [{"id", "attributes": {...}}], "meta"}` or the v5 flat one. Without the bearer
    token: 401, as Strapi answers."""

    COLLECTIONS = ("pipeline-deals", "forecast-snapshots", "billings", "calibration-records")

    def __init__(self, server: FakeHTTPServer, shape: str) -> None:
        assert shape in ("v4", "v5")
        self.server = server
        self.shape = shape
        self.entries: dict[str, list[dict[str, Any]]] = {c: [] for c in self.COLLECTIONS}
        self.lock = threading.Lock()
        self.next_id = 1
        self.down = False  # every request 503
        self.failures: dict[tuple[str, str], int] = {}  # (method, collection) → 503s left
        for collection in self.COLLECTIONS:
            server.route("GET", self.path(collection), self._handler(collection, self._find))
            server.route("POST", self.path(collection), self._handler(collection, self._create))

    @staticmethod
    def path(collection: str, key: Any = None) -> str:
        return f"{STRAPI_PREFIX}/{collection}" + ("" if key is None else f"/{key}")

    @property
    def url(self) -> str:
        return self.server.url + STRAPI_PREFIX

    def add(self, collection: str, **fields: Any) -> dict[str, Any]:
        with self.lock:
            entry = {
                "id": self.next_id,
                "documentId": uuid.uuid4().hex[:24],
                "createdAt": f"2026-01-01T00:00:{self.next_id:02d}.000Z",
                **fields,
            }
            self.next_id += 1
            self.entries[collection].append(entry)
        key = entry["documentId"] if self.shape == "v5" else entry["id"]
        self.server.route(
            "DELETE",
            self.path(collection, key),
            self._handler(collection, lambda req, c: self._delete(c, entry)),
        )
        return entry

    def requests(self, method: str, collection: str) -> list[Request]:
        prefix = self.path(collection)
        return [
            r
            for r in list(self.server.requests)
            if r.method == method and (r.path == prefix or r.path.startswith(prefix + "/"))
        ]

    def view(self, entry: dict[str, Any]) -> dict[str, Any]:
        if self.shape == "v5":
            return dict(entry)
        fields = {k: v for k, v in entry.items() if k not in ("id", "documentId")}
        return {"id": entry["id"], "attributes": fields}

    def _handler(self, collection: str, answer: Any) -> Any:
        def handle(req: Request) -> Response:
            if req.headers.get("authorization") != f"Bearer {STRAPI_TOKEN}":
                return _strapi_error(401, "UnauthorizedError", "Missing or invalid credentials")
            with self.lock:
                left = self.failures.get((req.method, collection), 0)
                if left:
                    self.failures[(req.method, collection)] = left - 1
            if self.down or left:
                return Response(503, "<html><body>503 Service Unavailable</body></html>")
            return answer(req, collection)

        return handle

    def _find(self, req: Request, collection: str) -> Response:
        filters = {
            key[len("filters[") :].split("]", 1)[0]: value
            for key, value in req.query.items()
            if key.startswith("filters[") and key.endswith("[$eq]")
        }
        with self.lock:
            rows = [
                e
                for e in self.entries[collection]
                if all(str(e.get(f)) == v for f, v in filters.items())
            ]
        if req.query.get("sort") == "createdAt:desc":
            rows.sort(key=lambda e: e["createdAt"], reverse=True)
        size = int(req.query.get("pagination[pageSize]", 25))
        page = rows[:size]
        meta = {
            "pagination": {
                "page": 1,
                "pageSize": size,
                "pageCount": max(1, -(-len(rows) // size)),
                "total": len(rows),
            }
        }
        return Response(200, {"data": [self.view(e) for e in page], "meta": meta})

    def _create(self, req: Request, collection: str) -> Response:
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            return _strapi_error(400, "ValidationError", 'Missing "data" payload')
        entry = self.add(collection, **body["data"])
        return Response(200, {"data": self.view(entry), "meta": {}})

    def _delete(self, collection: str, entry: dict[str, Any]) -> Response:
        with self.lock:
            if entry not in self.entries[collection]:
                return _strapi_error(404, "NotFoundError", "Not Found")
            self.entries[collection].remove(entry)
        if self.shape == "v5":
            return Response(204, b"")
        return Response(200, {"data": self.view(entry), "meta": {}})


def _strapi_error(status: int, name: str, message: str) -> Response:
    error = {"status": status, "name": name, "message": message, "details": {}}
    return Response(status, {"data": None, "error": error})


# -- the fake LLM ---------------------------------------------------------------------------------


class FakeLLM:
    def __init__(self) -> None:
        self.prompts: list[str] = []

    def __call__(self, req: Request) -> Response:
        prompt = req.json()["messages"][-1]["content"]
        self.prompts.append(prompt)
        if "forecast B2B sales deals" in prompt:
            return Response(200, openai_chat_body(json.dumps(FORECAST)))
        return Response(200, openai_chat_body(SUMMARY))


# -- set-up ---------------------------------------------------------------------------------------


def fast_defs(directory: Path, retries: dict[str, int] | None = None) -> Path:
    """The shipped definitions, services and triggers, with retry delays cut to 50-200 ms
    (and `retries` overriding max_retries of named steps)."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in SHIPPED_DEFS.glob("*.json"):
        shutil.copy(path, directory / path.name)
    for name in FLOWS:
        path = directory / f"{name}.json"
        defn = json.loads(path.read_text(encoding="utf-8"))
        for step in _walk_steps(defn["steps"]):
            if "retry" in step:
                step["retry"] = {**step["retry"], "initial_delay": 0.05, "max_delay": 0.2}
                if retries and step["id"] in retries:
                    step["retry"]["max_retries"] = retries[step["id"]]
        path.write_text(json.dumps(defn), encoding="utf-8")
    return directory


def _walk_steps(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for step in steps:
        yield step
        config = step.get("config") or {}
        for block in (
            [config.get("steps") or [], config.get("default") or []]
            + [case.get("steps") or [] for case in config.get("cases") or []]
            + list((config.get("branches") or {}).values())
        ):
            yield from _walk_steps(block)


def flow_settings(settings: Settings, defs: Path, strapi: FakeStrapi) -> Settings:
    return settings.model_copy(
        update={
            "workflow_defs_dir": defs,
            "strapi_webhook_secret": WEBHOOK_SECRET,
            "strapi_url": strapi.url,
            "strapi_api_token": STRAPI_TOKEN,
        }
    )


def event(kind: str, model: str, entry: dict[str, Any], shape: str) -> bytes:
    """A Strapi webhook body. Strapi 4 events carry the entry's fields and numeric id; Strapi 5
    events add documentId."""
    body_entry = {k: v for k, v in entry.items() if shape == "v5" or k != "documentId"}
    return json.dumps(
        {
            "event": kind,
            # Unique per call: the same bytes would (rightly) map to the same job.
            "createdAt": datetime.now(UTC).isoformat(),
            "model": model,
            "uid": f"api::{model}.{model}",
            "entry": {**body_entry, "nonce": uuid.uuid4().hex},
        }
    ).encode()


@pytest.fixture
def llm(upstream: FakeHTTPServer) -> FakeLLM:
    fake = FakeLLM()
    upstream.route("POST", CHAT, fake)
    return fake


class Stack:
    def __init__(self, api: httpx.AsyncClient, settings: Settings, client: Client) -> None:
        self.api = api
        self.settings = settings
        self.client = client

    async def send(self, body: bytes) -> str:
        headers = {
            "Content-Type": "application/json",
            "X-Webhook-Signature": sign_hex(WEBHOOK_SECRET, body),
        }
        resp = await self.api.post(WEBHOOK, content=body, headers=headers)
        assert resp.status_code == 202, resp.text
        [started] = resp.json()["started"]
        return str(started["job_id"])

    async def run(self, body: bytes, within: float = 60) -> dict[str, Any]:
        return await poll(self.api, await self.send(body), within=within)

    async def history_text(self, job_id: str) -> str:
        history = await self.client.get_workflow_handle(job_id).fetch_history()
        return history.to_json()


@pytest.fixture
async def stack_for(temporal_client: Client, engine: Engine) -> AsyncIterator[Any]:
    """`async with stack_for(settings) as stack`: a worker and the gateway on those settings."""

    @contextlib.asynccontextmanager
    async def make(settings: Settings) -> AsyncIterator[Stack]:
        async with harness.running_worker(temporal_client, settings, engine):
            app = create_app(settings, engine=engine, temporal_client=temporal_client)
            async with serve(app) as api:
                yield Stack(api, settings, temporal_client)

    yield make


def records(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["path"]: s for s in job["metadata"]["steps"]}


def assert_no_token(*surfaces: Any) -> None:
    for surface in surfaces:
        text = surface if isinstance(surface, str) else json.dumps(surface, default=str)
        assert STRAPI_TOKEN not in text
        assert STRAPI_TOKEN[:12] not in text


# -- the shipped figures ------------------------------------------------------------------------


def test_shipped_flows_declare_the_integration_layers_retry_and_breaker_figures() -> None:
    strapi = load_services(SHIPPED_DEFS / "services.json").get("strapi")
    assert strapi.breaker is not None
    assert strapi.breaker.model_dump() == INTEGRATION_BREAKER
    assert strapi.cache_ttl == 0  # writes must reach Strapi, reads must be fresh
    assert strapi.auth is not None and strapi.auth.env == ["STRAPI_API_TOKEN"]
    assert strapi.base_url_env == "STRAPI_URL"
    for name in FLOWS:
        defn = json.loads((SHIPPED_DEFS / f"{name}.json").read_text(encoding="utf-8"))
        io_steps = [s for s in _walk_steps(defn["steps"]) if s["type"] in ("external_api", "llm")]
        assert io_steps, name
        for step in io_steps:
            assert step["retry"] == INTEGRATION_RETRY, (name, step["id"])
    triggers = json.loads((SHIPPED_DEFS / "triggers.json").read_text(encoding="utf-8"))
    mapped = {
        (t["event"], t["model"]): t["workflow"]
        for t in triggers["triggers"]
        if t["source"] == "strapi"
    }
    assert mapped[("entry.create", "pipeline-deal")] == "deal_forecast"
    assert mapped[("entry.update", "pipeline-deal")] == "deal_forecast"
    assert mapped[("entry.delete", "pipeline-deal")] == "deal_cleanup"
    assert mapped[("entry.create", "billing")] == "billing_calibration"
    assert mapped[("entry.update", "billing")] == "billing_calibration"


# -- deal_forecast ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["v4", "v5"])
async def test_deal_forecast_fetches_forecasts_and_writes_a_snapshot(
    shape: str,
    settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
    llm: FakeLLM,
    stack_for: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    strapi = FakeStrapi(upstream, shape)
    strapi.add("pipeline-deals", name="Acme renewal", account="acme", amount=50000)
    deal = strapi.add(
        "pipeline-deals", name="Globex expansion", account="globex", amount=50000, stage="proposal"
    )
    cfg = flow_settings(settings, fast_defs(tmp_path / "defs"), strapi)
    async with stack_for(cfg) as stack:
        job_id = await stack.send(event("entry.update", "pipeline-deal", deal, shape))
        job = await poll(stack.api, job_id, within=60)
        history = await stack.history_text(job_id)

    assert job["status"] == "completed", job["error"]
    assert job["workflow_name"] == "deal_forecast"
    # GET /pipeline-deals?filters[id][$eq]=<id> with the bearer token.
    [fetch] = strapi.requests("GET", "pipeline-deals")
    assert fetch.query["filters[id][$eq]"] == str(deal["id"])
    assert fetch.headers["authorization"] == f"Bearer {STRAPI_TOKEN}"
    # The LLM saw the deal's own fields, whichever shape Strapi answered in.
    [prompt] = llm.prompts
    assert "Globex expansion" in prompt and "proposal" in prompt and '"attributes"' not in prompt
    # POST /forecast-snapshots {"data": {...}}
    [post] = strapi.requests("POST", "forecast-snapshots")
    assert post.headers["authorization"] == f"Bearer {STRAPI_TOKEN}"
    data = post.json()["data"]
    assert data == {
        "deal_id": deal["id"],
        "account": "globex",
        **FORECAST,
        "model": "gpt-4o-mini",
    }
    [stored] = strapi.entries["forecast-snapshots"]
    assert stored["deal_id"] == deal["id"]
    output = job["output"]
    assert output["deal_id"] == deal["id"] and output["forecast"] == FORECAST
    assert output["snapshot"]["id"] == stored["id"]
    steps = records(job)
    assert steps["route"]["summary"]["case"] == "case0"
    assert steps["route.save_snapshot"]["status"] == "completed"
    assert steps["fetch_deal"]["attempts"] == 1
    row = get_job(engine, job_id)
    assert row is not None
    assert_no_token(job, history, row.input_data, row.output, caplog.text)


async def test_deal_forecast_skips_a_deal_that_no_longer_exists(
    settings: Settings,
    upstream: FakeHTTPServer,
    llm: FakeLLM,
    stack_for: Any,
    tmp_path: Path,
) -> None:
    strapi = FakeStrapi(upstream, "v5")
    gone = {"id": 987654, "documentId": "gone0000000000000000000a", "name": "Deleted deal"}
    cfg = flow_settings(settings, fast_defs(tmp_path / "defs"), strapi)
    async with stack_for(cfg) as stack:
        job = await stack.run(event("entry.create", "pipeline-deal", gone, "v5"))
    assert job["status"] == "completed", job["error"]
    assert job["output"] == {"skipped": "deal not found"}
    assert len(strapi.requests("GET", "pipeline-deals")) == 1
    assert strapi.requests("POST", "forecast-snapshots") == []
    assert llm.prompts == []
    assert records(job)["route"]["summary"]["case"] == "default"


# -- deal_cleanup -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["v4", "v5"])
async def test_deal_cleanup_deletes_each_of_the_deals_snapshots(
    shape: str,
    settings: Settings,
    upstream: FakeHTTPServer,
    stack_for: Any,
    tmp_path: Path,
) -> None:
    strapi = FakeStrapi(upstream, shape)
    deal = {"id": random.randint(10_000, 99_999), "documentId": uuid.uuid4().hex[:24]}
    mine = [
        strapi.add("forecast-snapshots", deal_id=deal["id"], weighted_amount=i) for i in (1, 2, 3)
    ]
    other = strapi.add("forecast-snapshots", deal_id=deal["id"] + 1, weighted_amount=9)
    cfg = flow_settings(settings, fast_defs(tmp_path / "defs"), strapi)
    async with stack_for(cfg) as stack:
        job = await stack.run(event("entry.delete", "pipeline-deal", deal, shape))

    assert job["status"] == "completed", job["error"]
    assert job["workflow_name"] == "deal_cleanup"
    [find] = strapi.requests("GET", "forecast-snapshots")
    assert find.query["filters[deal_id][$eq]"] == str(deal["id"])
    deletes = strapi.requests("DELETE", "forecast-snapshots")
    key = "documentId" if shape == "v5" else "id"
    assert sorted(r.path for r in deletes) == sorted(
        FakeStrapi.path("forecast-snapshots", s[key]) for s in mine
    )
    assert all(r.headers["authorization"] == f"Bearer {STRAPI_TOKEN}" for r in deletes)
    assert strapi.entries["forecast-snapshots"] == [other]
    assert job["output"] == {
        "deal_id": deal["id"],
        "deleted": [s["id"] for s in sorted(mine, key=lambda s: s["createdAt"], reverse=True)],
    }
    steps = records(job)
    assert steps["delete_snapshots"]["summary"]["completed"] == 3


# -- billing_calibration ----------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["v4", "v5"])
async def test_billing_calibration_compares_forecasts_with_billings_and_stores_a_record(
    shape: str,
    settings: Settings,
    upstream: FakeHTTPServer,
    llm: FakeLLM,
    stack_for: Any,
    tmp_path: Path,
) -> None:
    strapi = FakeStrapi(upstream, shape)
    account = f"acct-{uuid.uuid4().hex[:8]}"
    # Older snapshots first: the newest snapshot of a deal is the one compared.
    strapi.add("forecast-snapshots", deal_id=1, account=account, weighted_amount=1)
    strapi.add("forecast-snapshots", deal_id=1, account=account, weighted_amount=1200)
    strapi.add("forecast-snapshots", deal_id=2, account=account, weighted_amount="400.00")
    strapi.add("forecast-snapshots", deal_id=3, account="someone-else", weighted_amount=5)
    strapi.add("billings", deal_id=1, account=account, amount=1000)
    strapi.add("billings", deal_id=2, account=account, amount=500)
    strapi.add("billings", deal_id=4, account="other-account", amount=1)
    # The billing the event is about: deal 3 has no forecast of its own.
    billing = strapi.add("billings", deal_id=3, account=account, amount=70)
    cfg = flow_settings(settings, fast_defs(tmp_path / "defs"), strapi)
    async with stack_for(cfg) as stack:
        job = await stack.run(event("entry.create", "billing", billing, shape))

    assert job["status"] == "completed", job["error"]
    assert job["workflow_name"] == "billing_calibration"
    [billings] = strapi.requests("GET", "billings")
    [forecasts] = strapi.requests("GET", "forecast-snapshots")
    assert billings.query["filters[account][$eq]"] == account
    assert forecasts.query["filters[account][$eq]"] == account
    # deal 1: 1200 vs 1000 (+200), deal 2: 400 vs 500 (-100), deal 3: no forecast.
    expected = {
        "count": 2,
        "mean_absolute_error": 150.0,
        "bias": 50.0,
        "mean_absolute_percentage_error": 0.2,
        "actual_total": 1500.0,
        "predicted_total": 1600.0,
        "unmatched": 1,
    }
    assert job["output"]["calibration"] == expected
    assert job["output"]["summary"] == SUMMARY
    [prompt] = llm.prompts
    assert "mean absolute error: 150.0" in prompt and account in prompt
    [post] = strapi.requests("POST", "calibration-records")
    assert post.headers["authorization"] == f"Bearer {STRAPI_TOKEN}"
    assert post.json()["data"] == {
        "account": account,
        "billing_id": billing["id"],
        "sample_count": 2,
        "unmatched_count": 1,
        "mean_absolute_error": 150.0,
        "bias": 50.0,
        "mean_absolute_percentage_error": 0.2,
        "summary": SUMMARY,
        "model": "gpt-4o-mini",
    }
    [record] = strapi.entries["calibration-records"]
    assert job["output"]["record"]["id"] == record["id"]


# -- resilience ---------------------------------------------------------------------------------


async def test_strapi_503_three_times_then_ok_completes_after_four_attempts(
    settings: Settings,
    upstream: FakeHTTPServer,
    llm: FakeLLM,
    stack_for: Any,
    tmp_path: Path,
) -> None:
    strapi = FakeStrapi(upstream, "v5")
    deal = strapi.add("pipeline-deals", name="Flaky deal", account="initech", amount=1000)
    strapi.failures[("GET", "pipeline-deals")] = 3
    cfg = flow_settings(settings, fast_defs(tmp_path / "defs"), strapi)
    async with stack_for(cfg) as stack:
        job = await stack.run(event("entry.update", "pipeline-deal", deal, "v5"))
    assert job["status"] == "completed", job["error"]
    assert records(job)["fetch_deal"]["attempts"] == 4
    assert len(strapi.requests("GET", "pipeline-deals")) == 4
    assert len(strapi.requests("POST", "forecast-snapshots")) == 1


async def test_strapi_down_opens_the_breaker_alerts_and_fails_the_job_fast(
    settings: Settings,
    upstream: FakeHTTPServer,
    llm: FakeLLM,
    stack_for: Any,
    tmp_path: Path,
) -> None:
    strapi = FakeStrapi(upstream, "v5")
    strapi.down = True
    first = {"id": random.randint(10_000, 99_999), "documentId": uuid.uuid4().hex[:24]}
    second = {"id": first["id"] + 1, "documentId": uuid.uuid4().hex[:24]}
    since = datetime.now(UTC).isoformat()
    # Two more attempts than the shipped three retries: the fifth 503 opens the breaker (its
    # shipped threshold), the sixth attempt is refused by it without calling Strapi.
    defs = fast_defs(tmp_path / "defs", retries={"fetch_deal": 5})
    cfg = flow_settings(settings, defs, strapi)
    async with stack_for(cfg) as stack:
        job = await stack.run(event("entry.update", "pipeline-deal", first, "v5"))
        assert job["status"] == "failed"
        assert "circuit breaker for service:strapi is open" in job["error"]["message"]
        assert job["error"]["step_id"] == "fetch_deal"
        assert records(job)["fetch_deal"]["attempts"] == 6
        assert len(strapi.requests("GET", "pipeline-deals")) == 5

        alerts = await stack.api.get("/api/v1/alerts", params={"source": "breaker", "since": since})
        assert alerts.status_code == 200, alerts.text
        opened = [a for a in alerts.json()["items"] if "service:strapi" in a["message"]]
        assert opened and "closed → open" in opened[0]["message"]
        assert opened[0]["level"] == "WARNING"

        # While it is open, another job's attempts fail fast and nothing reaches Strapi.
        job_id = await stack.send(event("entry.update", "pipeline-deal", second, "v5"))
        handle = stack.client.get_workflow_handle(job_id)
        message = await _first_activity_failure(handle)
        assert "circuit breaker for service:strapi is open" in message
        assert len(strapi.requests("GET", "pipeline-deals")) == 5
        await handle.cancel()
        cancelled = await poll(stack.api, job_id, within=30)
        assert cancelled["status"] == "cancelled"
    assert_no_token(job, alerts.json())


async def _first_activity_failure(handle: Any, within: float = 30) -> str:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        desc = await handle.describe()
        for pending in desc.raw_description.pending_activities:
            if pending.HasField("last_failure"):
                return str(pending.last_failure.message)
        assert asyncio.get_running_loop().time() < deadline, "no activity failed yet"
        await asyncio.sleep(0.1)


def test_fast_defs_copy_only_changes_delays(tmp_path: Path) -> None:
    defs = fast_defs(tmp_path / "defs")
    for name in FLOWS:
        shipped = json.loads((SHIPPED_DEFS / f"{name}.json").read_text(encoding="utf-8"))
        fast = json.loads((defs / f"{name}.json").read_text(encoding="utf-8"))
        for step in _walk_steps(shipped["steps"]):
            step.get("retry", {}).update(initial_delay=0.05, max_delay=0.2)
        assert fast == copy.deepcopy(shipped)


async def test_an_answer_without_a_body_is_null_data_only_where_no_body_is_expected(
    upstream: FakeHTTPServer,
) -> None:
    """Strapi 5 answers a DELETE with 204 and no body: the step's data is null. A service
    whose answers carry a status field (legacy Google) answering an empty 200 is still
    OUTPUT_INVALID."""
    strapi = FakeStrapi(upstream, "v5")
    snapshot = strapi.add("forecast-snapshots", deal_id=1)
    upstream.route("GET", "/maps/api/place/details/json", Response(200, b""))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        strapi_url=strapi.url,
        strapi_api_token=STRAPI_TOKEN,
        google_places_base_url=upstream.url,
        google_services_api_key="AIzaTestPlacesKey0123456789abcdef",
    )
    http = new_http_client()
    try:
        acts = ExternalApiActivities(settings, http, load_services(), ResponseCache())
        out = await ActivityEnvironment().run(
            acts.external_api_call,
            ExternalApiInput(
                step_id="d",
                service="strapi",
                operation="delete_forecast_snapshot",
                params={"document_id": snapshot["documentId"], "id": snapshot["id"]},
            ),
        )
        assert (out.status_code, out.data) == (204, None)
        assert strapi.entries["forecast-snapshots"] == []
        with pytest.raises(ApplicationError) as info:
            await ActivityEnvironment().run(
                acts.external_api_call,
                ExternalApiInput(
                    step_id="p",
                    service="google_places",
                    operation="place_details",
                    params={"place_id": "x"},
                    cache_ttl=0,
                ),
            )
        assert info.value.type == "OUTPUT_INVALID"
    finally:
        await http.aclose()


# -- committed histories (tests/test_replay.py replays them) -------------------------------------

HISTORIES = Path(__file__).parent / "histories"


@pytest.mark.skipif(
    not os.environ.get("LLMFLOW_RECORD_HISTORIES"),
    reason="set LLMFLOW_RECORD_HISTORIES=1 to re-record",
)
@pytest.mark.parametrize("name", FLOWS)
async def test_record_history(
    name: str,
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
    llm: FakeLLM,
) -> None:
    """The shipped definitions as shipped, started directly, on a Strapi 5 fake."""
    strapi = FakeStrapi(upstream, "v5")
    deal = strapi.add("pipeline-deals", name="Recorded deal", account="acme", amount=1000)
    strapi.add("forecast-snapshots", deal_id=deal["id"], account="acme", weighted_amount=900)
    strapi.add("forecast-snapshots", deal_id=deal["id"], account="acme", weighted_amount=800)
    billing = strapi.add("billings", deal_id=deal["id"], account="acme", amount=1000)
    inputs = {
        "deal_forecast": {"deal_id": deal["id"], "document_id": deal["documentId"]},
        "deal_cleanup": {"deal_id": deal["id"], "document_id": deal["documentId"]},
        "billing_calibration": {"billing_id": billing["id"], "account": "acme"},
    }
    cfg = settings.model_copy(update={"strapi_url": strapi.url, "strapi_api_token": STRAPI_TOKEN})
    loaded = load_catalog(cfg).definitions.get(name)
    assert loaded is not None
    async with harness.running_worker(temporal_client, cfg, engine):
        handle = await harness.start(temporal_client, cfg, loaded, inputs[name])
        result = await handle.result()
        history = await handle.fetch_history()
    assert result.status == "completed", result
    text = history.to_json()
    assert_no_token(text)
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(text + "\n")
