"""Replay recorded histories against the current interpreter (nondeterminism check).

Used by CI over tests/histories/ and by `llmflow replay <history.json | job_id>`.
"""

from __future__ import annotations

import json
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, WorkflowReplayResult

from worker.app import sandbox_runner
from worker.interpreter import InterpreterWorkflow
from worker.mirror_workflow import MirrorWorkflow
from worker.webhook_delivery import WebhookDeliveryWorkflow


def replayer() -> Replayer:
    return Replayer(
        workflows=[InterpreterWorkflow, WebhookDeliveryWorkflow, MirrorWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=sandbox_runner(),
    )


def load_history_file(path: Path) -> WorkflowHistory:
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    # `temporal workflow show -o json` and fetch_history().to_json() both give {"events": [...]}.
    events = data.get("events") or []
    workflow_id = path.stem
    for event in events[:1]:
        attrs = event.get("workflowExecutionStartedEventAttributes") or {}
        workflow_id = attrs.get("workflowId") or workflow_id
    return WorkflowHistory.from_json(workflow_id, text)


async def replay(history: WorkflowHistory) -> WorkflowReplayResult:
    """Raises on nondeterminism (the error names the event and command that diverged)."""
    return await replayer().replay_workflow(history, raise_on_replay_failure=True)


async def fetch_history(client: Client, job_id: str) -> WorkflowHistory:
    return await client.get_workflow_handle(job_id).fetch_history()
