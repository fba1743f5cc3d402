"""The live event stream tells steps in the order they ran, even when several start and end
between two polls of the job, and every `finished` comes before the terminal status."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.settings import Settings
from tests import harness
from tests.api_server import gateway
from tests.test_api_rerun_events import read_events

REPO_DEFS = Path(__file__).resolve().parents[1] / "workflow_defs"


def quick(step_id: str) -> dict[str, object]:
    return {
        "id": step_id,
        "type": "transform",
        "config": {"operation": "coalesce", "config": {"values": [step_id]}},
    }


SEQUENCE = {
    "name": "event_order",
    "version": "1.0.0",
    "steps": [
        quick("first"),
        quick("second"),
        {"id": "pause", "type": "wait", "config": {"seconds": 1}},
        quick("third"),
        {"id": "rest", "type": "wait", "config": {"seconds": 1}},
        quick("last"),
    ],
}


async def test_steps_are_told_in_the_order_they_ran(
    temporal_client: Client, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    defs = tmp_path / "defs"
    shutil.copytree(REPO_DEFS, defs, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (defs / "event_order.json").write_text(json.dumps(SEQUENCE))
    cfg = settings.model_copy(update={"workflow_defs_dir": defs})
    async with harness.running_worker(temporal_client, cfg, engine):
        async with gateway(cfg, engine=engine, temporal_client=temporal_client) as api:
            job_id = (await api.post("/api/v1/jobs", json={"workflow_name": "event_order"})).json()[
                "job_id"
            ]
            events = await read_events(api, job_id)
    told = [(d["path"], d["phase"]) for name, d in events if name == "step"]
    ran = [step["id"] for step in SEQUENCE["steps"]]  # type: ignore[index]
    assert told == [(step, phase) for step in ran for phase in ("started", "finished")]
    names = [name for name, _ in events]
    assert names[-2:] == ["status", "job"]
    finished = [d for name, d in events if name == "step" and d["phase"] == "finished"]
    assert all("duration_ms" in d and "attempts" in d for d in finished)
