"""The shipped workflows that use control flow, through the REST API on the real stack:
place_briefs (foreach) and draft_refine (loop), against wire-level fakes and on the mock
provider (what `make dev` runs without a key)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.settings import Settings
from tests import harness
from tests.api_server import gateway
from tests.fakes.http_server import FakeHTTPServer, Request, Response
from tests.fakes.llm_wire import openai_chat_body, openai_error
from tests.test_api_jobs import poll

CHAT = "/openrouter/api/v1/chat/completions"
NEARBY = "/maps/api/place/nearbysearch/json"
PLACES = ["Mercy General", "Broken Clinic", "Bay Urgent Care", "St. Luke's", "Harbor ER"]


def nearby(req: Request) -> Response:
    results = [
        {"place_id": f"p{i}", "name": name, "vicinity": f"{i} Main St", "rating": 4.1}
        for i, name in enumerate(PLACES)
    ]
    return Response(200, {"status": "OK", "results": results})


class Briefer:
    def __init__(self) -> None:
        self.in_flight = self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, req: Request) -> Response:
        prompt = req.json()["messages"][-1]["content"]
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(0.2)
            if "Broken Clinic" in prompt:
                return openai_error(400, "refused")
            reply = {"fit": "high", "summary": "Open all night.", "caveat": ""}
            return Response(200, openai_chat_body(json.dumps(reply)))
        finally:
            with self.lock:
                self.in_flight -= 1


async def test_place_briefs_briefs_each_place_four_at_a_time_and_tolerates_one_failure(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    briefer = Briefer()
    upstream.route("GET", NEARBY, nearby)
    upstream.route("POST", CHAT, briefer)
    body = {"workflow_name": "place_briefs", "input_data": {"lat": 37.77, "lng": -122.42}}
    async with harness.running_worker(temporal_client, settings, engine):
        async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
            job_id = (await api.post("/api/v1/jobs", json=body)).json()["job_id"]
            job = await poll(api, job_id)
    assert job["status"] == "completed", job["error"]
    places = job["output"]["places"]
    assert [p["name"] if p else None for p in places] == [
        "Mercy General",
        None,  # its brief failed: tolerated (1), its slot is null
        "Bay Urgent Care",
        "St. Luke's",
        "Harbor ER",
    ]
    assert places[0]["brief"]["fit"] == "high"
    assert 2 <= briefer.peak <= 4
    records = {s["path"]: s for s in job["metadata"]["steps"]}
    assert records["briefs"]["summary"]["failed"] == [1]
    assert records["briefs[1].brief"]["status"] == "failed"
    llm_tokens = sum(s["tokens"] for s in job["metadata"]["steps"] if s["type"] == "llm")
    assert records["briefs"]["tokens"] == llm_tokens == job["metadata"]["total_tokens"]


async def test_draft_refine_loops_until_the_critic_is_satisfied(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    scores = iter([5, 9])
    prompts: list[str] = []

    def llm(req: Request) -> Response:
        prompt = req.json()["messages"][-1]["content"]
        prompts.append(prompt)
        if "Score it from 0 to 10" in prompt:
            score = next(scores)
            reply = json.dumps({"score": score, "feedback": f"feedback after {score}"})
        else:
            reply = f"draft {len(prompts)}"
        return Response(200, openai_chat_body(reply))

    upstream.route("POST", CHAT, llm)
    body = {"workflow_name": "draft_refine", "input_data": {"brief": "Invite neighbours"}}
    async with harness.running_worker(temporal_client, settings, engine):
        async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
            job_id = (await api.post("/api/v1/jobs", json=body)).json()["job_id"]
            job = await poll(api, job_id)
    assert job["status"] == "completed", job["error"]
    assert job["output"] == {"draft": "draft 3", "score": 9, "feedback": "feedback after 9"}
    refine = next(s for s in job["metadata"]["steps"] if s["path"] == "refine")
    assert refine["summary"]["iterations"] == 2 and refine["summary"]["until_met"] is True
    # The second draft answers the first critique.
    assert "feedback after 5" in prompts[2] and "draft 1" in prompts[2]
    assert {"refine#1.draft", "refine#2.critique"} <= {s["path"] for s in job["metadata"]["steps"]}


@pytest.mark.parametrize(
    ("name", "input_data"),
    [
        ("place_briefs", {"lat": 37.77, "lng": -122.42, "max_places": 3}),
        ("draft_refine", {"brief": "Say thanks to the volunteers"}),
    ],
)
async def test_shipped_control_flow_runs_on_the_mock_provider(
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
    name: str,
    input_data: dict[str, Any],
) -> None:
    upstream.route("GET", NEARBY, nearby)
    mock = settings.model_copy(update={"llm_default_provider": "mock", "openrouter_api_key": None})
    async with harness.running_worker(temporal_client, mock, engine):
        async with gateway(mock, engine=engine, temporal_client=temporal_client) as api:
            job_id = (
                await api.post(
                    "/api/v1/jobs", json={"workflow_name": name, "input_data": input_data}
                )
            ).json()["job_id"]
            job = await poll(api, job_id)
    assert job["status"] == "completed", job["error"]
    assert job["output"]


def triage_llm(req: Request) -> Response:
    body = req.json()
    prompt = body["messages"][-1]["content"]
    if "response_format" in body:  # classify
        if "charged twice" in prompt:
            kind = {"category": "billing", "urgency": "high", "summary": "double charge"}
        else:
            kind = {"category": "bug", "urgency": "normal", "summary": "app crashes"}
        return Response(200, openai_chat_body(json.dumps(kind)))
    tone = "billing-aware" if "billing-aware" in prompt else "technical"
    return Response(200, openai_chat_body(f"A {tone} reply."))


@pytest.mark.parametrize("decision", ["approve", "reject"])
async def test_ticket_triage_routes_by_category_and_asks_before_an_urgent_reply(
    temporal_client: Client,
    settings: Settings,
    engine: Engine,
    upstream: FakeHTTPServer,
    decision: str,
) -> None:
    upstream.route("POST", CHAT, triage_llm)
    upstream.route("POST", "/replies", Response(200, "sent"))
    hooked = settings.model_copy(update={"llm_webhook_secret": "triage-secret-0123456"})
    body = {
        "workflow_name": "ticket_triage",
        "input_data": {
            "message": "I was charged twice!",
            "reply_webhook_url": f"{upstream.url}/replies",
        },
    }
    async with harness.running_worker(temporal_client, hooked, engine):
        async with gateway(hooked, engine=engine, temporal_client=temporal_client) as api:
            job_id = (await api.post("/api/v1/jobs", json=body)).json()["job_id"]
            deadline = time.monotonic() + 20
            while not (view := (await api.get(f"/api/v1/jobs/{job_id}")).json())["waiting"]:
                assert time.monotonic() < deadline, view
                await asyncio.sleep(0.1)
            assert upstream.requests_to("/replies") == []  # nothing sent before the decision
            approved = decision == "approve"
            decided = await api.post(
                f"/api/v1/jobs/{job_id}/approvals/urgent_review",
                json={"approved": approved, "data": {"edited_reply": "Refunded, sorry!"}},
            )
            job = await poll(api, job_id)
    assert decided.status_code == 200, decided.text
    assert view["waiting"][0]["prompt"].startswith("Urgent billing ticket: double charge.")
    assert job["status"] == "completed", job["error"]
    assert job["output"]["reply"] == "A billing-aware reply."
    paths = {s["path"] for s in job["metadata"]["steps"]}
    assert "route.billing_reply" in paths and "route.bug_reply" not in paths
    sent = upstream.requests_to("/replies")
    if approved:
        assert job["output"]["sent"] == "completed"
        assert sent[0].json()["edited_reply"] == "Refunded, sorry!"
        assert sent[0].json()["approved_by"] == "anonymous"
    else:
        assert job["output"]["sent"] == "skipped" and sent == []


async def test_ticket_triage_sends_a_normal_reply_without_asking(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    upstream.route("POST", CHAT, triage_llm)
    upstream.route("POST", "/replies", Response(200, "sent"))
    hooked = settings.model_copy(update={"llm_webhook_secret": "triage-secret-0123456"})
    body = {
        "workflow_name": "ticket_triage",
        "input_data": {
            "message": "The app crashes",
            "reply_webhook_url": f"{upstream.url}/replies",
        },
    }
    async with harness.running_worker(temporal_client, hooked, engine):
        async with gateway(hooked, engine=engine, temporal_client=temporal_client) as api:
            job = await poll(api, (await api.post("/api/v1/jobs", json=body)).json()["job_id"])
    assert job["status"] == "completed", job["error"]
    assert job["output"]["reply"] == "A technical reply." and job["output"]["sent"] == "completed"
    records = {s["path"]: s for s in job["metadata"]["steps"]}
    assert records["urgent_review"]["status"] == "skipped"
    assert records["route"]["summary"]["case"] == "case1"
