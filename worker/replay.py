"""Replay recorded histories against the current interpreter (nondeterminism check).

Used by CI over tests/histories/ and by `llmflow replay <history.json | job_id>`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import Replayer, WorkflowReplayResult

from worker.app import sandbox_runner
from worker.foreach_batch import ForeachBatchWorkflow
from worker.interpreter import InterpreterWorkflow
from worker.mirror_workflow import MirrorWorkflow
from worker.webhook_delivery import WebhookDeliveryWorkflow

WORKFLOWS: tuple[type, ...] = (
    InterpreterWorkflow,
    ForeachBatchWorkflow,
    WebhookDeliveryWorkflow,
    MirrorWorkflow,
)


class HistoryFileError(ValueError):
    """The file is not a workflow history in any shape we know."""


def replayer(
    workflows: Sequence[type] | None = None,
    *,
    runtime: Runtime | None = None,
    data_converter: DataConverter | None = None,
) -> Replayer:
    """`data_converter`: the one the history was written with (core.payload_codec's, to open
    encrypted payloads); by default `pydantic_data_converter`."""
    return Replayer(
        workflows=list(workflows or WORKFLOWS),
        data_converter=data_converter or pydantic_data_converter,
        workflow_runner=sandbox_runner(),
        runtime=runtime,
    )


@cache
def quiet_runtime() -> Runtime:
    # Core logs every failed workflow task at WARN with the whole failure; the CLI prints
    # its own report instead.
    filt = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=filt)))


def history_dict(data: Any) -> dict[str, Any]:
    """Accept `history.to_json()`, `temporal workflow show -o json` (both `{"events": [...]}`),
    a bare event list, and a GetWorkflowExecutionHistory response (`{"history": {...}}`)."""
    if isinstance(data, list):
        data = {"events": data}
    if isinstance(data, dict) and "events" not in data and isinstance(data.get("history"), dict):
        data = data["history"]
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise HistoryFileError("not a workflow history: expected a JSON object with an events list")
    if not data["events"]:
        raise HistoryFileError("the history has no events")
    return data


def load_history_file(path: Path) -> WorkflowHistory:
    try:
        data = history_dict(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as exc:
        raise HistoryFileError(f"not valid JSON: {exc}") from None
    first = data["events"][0] if isinstance(data["events"][0], dict) else {}
    attrs = first.get("workflowExecutionStartedEventAttributes") or {}
    workflow_id = attrs.get("workflowId") or path.stem
    try:
        return WorkflowHistory.from_json(workflow_id, data)
    except Exception as exc:  # protobuf ParseError / ValueError on malformed events
        raise HistoryFileError(f"not a workflow history: {exc}") from None


async def replay(
    history: WorkflowHistory,
    *,
    workflows: Sequence[type] | None = None,
    data_converter: DataConverter | None = None,
) -> WorkflowReplayResult:
    """Raises on nondeterminism (the error names the event and command that diverged)."""
    return await replayer(workflows, data_converter=data_converter).replay_workflow(
        history, raise_on_replay_failure=True
    )


async def fetch_history(client: Client, job_id: str) -> WorkflowHistory:
    return await client.get_workflow_handle(job_id).fetch_history()


async def first_failing_event(history: WorkflowHistory, replay_with: Replayer) -> int | None:
    """Event id ending the shortest history prefix that fails to replay.

    For failures whose message names no event (e.g. an activity type mismatch). A replay
    failure persists once reached, so a binary search over prefix lengths finds it. Prefixes
    start at 2 events: a lone WorkflowExecutionStarted never finishes replaying.
    """
    events = list(history.events)

    async def fails(k: int) -> bool:
        prefix = WorkflowHistory(history.workflow_id, events[:k])
        result = await replay_with.replay_workflow(prefix, raise_on_replay_failure=False)
        return result.replay_failure is not None

    lo, hi = 2, len(events)
    if hi < lo or not await fails(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if await fails(mid):
            hi = mid
        else:
            lo = mid + 1
    return events[hi - 1].event_id
