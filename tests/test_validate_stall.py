"""POST /api/v1/workflows/validate on hostile bodies, through the real gateway.

Validation is CPU work on a request body. Seven concurrent calls with a 1 MB `when` each once
took ~113 s and held every thread of the default pool, which database calls share, so
/health answered 503. Now such a body is refused before any parsing, the rest runs on the
route's own small executor, and a refused or malformed definition is always an answer that
names the path and the limit, never a 500.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.db import delete_job, insert_job
from core.models import Job
from core.settings import Settings
from tests.api_server import gateway
from workflow_defs.expressions import MAX_CONDITION_CHARS
from workflow_defs.loader import MAX_DEFINITION_BYTES, definition_bytes

VALIDATE = "/api/v1/workflows/validate"
PROBE_BOUND_SECONDS = 1.0


def llm(step_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "llm", "config": {"model": "m", "prompt_text": "hi"}, **extra}


def reported_condition_body() -> dict[str, Any]:
    """The body from the incident: one `when` of about a megabyte, ~200,000 tokens."""
    return {"name": "huge", "steps": [llm("a", when="input.a == 1 " * 76_000)]}


def heaviest_accepted_body(seed: int) -> dict[str, Any]:
    """As much condition parsing as a definition under the size limit can ask for: steps whose
    `when` is as long as allowed and made of as many paths as fit."""
    terms = (f"input.a{i} == {seed}" for i in range(10_000))
    when = ""
    for term in terms:
        if len(when) + len(term) + 4 > MAX_CONDITION_CHARS:
            break
        when = f"{when} or {term}" if when else term
    steps = [llm("s0")]
    while True:
        steps.append(llm(f"s{len(steps)}", when=when))
        body = {"name": f"heavy{seed}", "steps": steps}
        if definition_bytes(body) > MAX_DEFINITION_BYTES - 2 * len(when):
            return body


async def test_the_reported_body_is_413_naming_the_limit(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    body = reported_condition_body()
    async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
        started = time.perf_counter()
        resp = await api.post(VALIDATE, json=body)
        elapsed = time.perf_counter() - started
    assert resp.status_code == 413, resp.text
    assert f"{MAX_DEFINITION_BYTES:,}-byte limit" in resp.json()["detail"]
    assert elapsed < PROBE_BOUND_SECONDS


async def test_refused_pieces_are_errors_at_their_path(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    regex = {
        "id": "r",
        "type": "transform",
        "config": {"operation": "regex_extract", "config": {"pattern": "x{4294967295}"}},
    }
    nul = {"id": "p", "type": "llm", "config": {"model": "m", "prompt_template": "a\x00b.md"}}
    bodies = {
        "$.steps[0].config.config.pattern": {"name": "re", "steps": [regex]},
        "$.steps[0].config.prompt_template": {"name": "nul", "steps": [nul]},
        "$.steps[0].when": {
            "name": "ors",
            "steps": [llm("w", when=" or ".join(["input.flag"] * 1000))],
        },
        "$.steps[0].config.prompt_text": {
            "name": "ref",
            "steps": [llm("t") | {"config": {"model": "m", "prompt_text": "${input.a\x00}"}}],
        },
    }
    async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
        answers = {path: await api.post(VALIDATE, json=body) for path, body in bodies.items()}
    for path, resp in answers.items():
        assert resp.status_code == 200, (path, resp.status_code, resp.text)
        result = resp.json()
        assert result["valid"] is False
        assert [e["path"] for e in result["errors"]] == [path], result
    assert (
        "over 1,000" in answers["$.steps[0].config.config.pattern"].json()["errors"][0]["message"]
    )
    when_error = answers["$.steps[0].when"].json()["errors"][0]["message"]
    assert f"{MAX_CONDITION_CHARS:,}-character limit" in when_error


def _strings(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _strings(child, (*path, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _strings(child, (*path, i))


def _with_nul(definition: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    changed = copy.deepcopy(definition)
    node: Any = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = node[path[-1]] + "\x00"
    return changed


async def test_a_nul_in_any_string_of_a_definition_is_never_a_500(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    shipped = [
        json.loads((settings.workflow_defs_dir / f"{name}.json").read_text())
        for name in ("emergency_contacts", "quickstart")
    ]
    async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
        for definition in shipped:
            for path in _strings(definition):
                resp = await api.post(VALIDATE, json=_with_nul(definition, path))
                assert resp.status_code == 200, (path, resp.status_code, resp.text)


async def test_health_and_jobs_answer_while_heavy_validations_run(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    job_id = f"stall-{uuid.uuid4()}"
    insert_job(
        engine,
        Job(
            job_id=job_id,
            workflow_name="quickstart",
            workflow_version="1.0.0",
            status="completed",
            owner="anonymous",
        ),
    )
    # Eight bodies as in the incident (they held the default pool for minutes; now refused at
    # once) and eight that are accepted and cost the most parsing a definition can ask for.
    bodies = [reported_condition_body()] * 8 + [heaviest_accepted_body(i) for i in range(8)]
    latencies: list[float] = []
    try:
        async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
            assert (await api.get("/health")).status_code == 200  # warm: clients connected

            async def probe(path: str) -> None:
                started = time.perf_counter()
                resp = await api.get(path)
                latencies.append(time.perf_counter() - started)
                assert resp.status_code == 200, (path, resp.status_code, resp.text)

            async def validate(body: dict[str, Any]) -> httpx.Response:
                async with httpx.AsyncClient(base_url=str(api.base_url), timeout=120) as own:
                    return await own.post(VALIDATE, json=body)

            tasks = [asyncio.create_task(validate(body)) for body in bodies]
            probes_while_running = 0
            started = time.perf_counter()
            await asyncio.sleep(0.05)  # the uploads are under way
            while not all(task.done() for task in tasks):
                await probe("/health")
                await probe(f"/api/v1/jobs/{job_id}")
                probes_while_running += 1
                await asyncio.sleep(0.05)
            answers = [await task for task in tasks]
            took = time.perf_counter() - started
    finally:
        delete_job(engine, job_id)

    assert [a.status_code for a in answers] == [413] * 8 + [200] * 8, [a.text for a in answers]
    assert all(a.json()["valid"] is True for a in answers[8:])
    assert probes_while_running >= 2, f"the validations ended before they were probed ({took} s)"
    # Not stalled: no probe waited for the validations. A loaded machine slows both, so the
    # bound is a share of the time they took (and never under PROBE_BOUND_SECONDS).
    bound = max(PROBE_BOUND_SECONDS, took / 4)
    assert max(latencies) < bound, (took, sorted(latencies)[-5:])
    print(f"validations {took:.2f} s, {len(latencies)} probes, slowest {max(latencies):.3f} s")


async def test_validations_waiting_past_the_limit_are_429(
    temporal_client: Client, settings: Settings, engine: Engine, monkeypatch: Any
) -> None:
    from api.routers import workflows

    monkeypatch.setattr(workflows, "_pending_validations", settings.validate_max_pending)
    async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
        resp = await api.post(VALIDATE, json={"name": "x", "steps": [llm("a")]})
    assert resp.status_code == 429, resp.text
    assert resp.headers["Retry-After"] == "1" and "VALIDATE_MAX_PENDING" in resp.json()["detail"]
