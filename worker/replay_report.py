"""Turn a replay failure and its history into a report naming the step that diverged.

Core's nondeterminism errors name a history event ("HistoryEvent(id: 7,
ActivityTaskScheduled)") but not the step. The interpreter gives every activity a summary
"<step_id>: <display name or type>" (user_metadata on ActivityTaskScheduled), so the step is
read from there; for other events the nearest earlier step activity says "after step X".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from core.contracts import EXTERNAL_API_CALL, HTTP_REQUEST, LLM_CALL, WEBHOOK_SEND

STEP_ACTIVITY_TYPES = frozenset({LLM_CALL, EXTERNAL_API_CALL, HTTP_REQUEST, WEBHOOK_SEND})

_EVENT_ID = re.compile(r"HistoryEvent\(id: (\d+)")
# Core wraps the message in a Rust debug dump: `Failure { failure: Some(Failure { message: "…"`.
_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')

HINT = (
    "Guard command-order changes with workflow.patched(...); see tests/test_replay.py for "
    "re-recording the committed histories."
)


@dataclass(frozen=True)
class EventInfo:
    event_id: int
    event_type: str  # CamelCase, as in Core's messages: "ActivityTaskScheduled"
    activity_type: str | None = None
    child_workflow_type: str | None = None
    summary: str | None = None

    @property
    def step_id(self) -> str | None:
        if self.activity_type in STEP_ACTIVITY_TYPES and self.summary and ": " in self.summary:
            return self.summary.split(": ", 1)[0]
        return None


@dataclass(frozen=True)
class Divergence:
    message: str
    nondeterminism: bool
    event: EventInfo | None
    # The nearest step activity scheduled before `event`, when `event` is not itself one.
    after: EventInfo | None

    @property
    def step_id(self) -> str | None:
        return self.event.step_id if self.event else None


def failure_message(error: BaseException | str) -> str:
    """The readable part of a replay failure (Core's message, without the debug dump)."""
    text = str(error)
    match = _CORE_MESSAGE.search(text)
    if match:
        return match.group(1).replace('\\"', '"').replace("\\\\", "\\")
    return text


def event_id_in(message: str) -> int | None:
    match = _EVENT_ID.search(message)
    return int(match.group(1)) if match else None


def _camel(event_type: int) -> str:
    name = EventType.Name(event_type).removeprefix("EVENT_TYPE_")  # type: ignore[arg-type]
    return "".join(part.capitalize() for part in name.split("_"))


def _summary(event: HistoryEvent) -> str | None:
    if not event.HasField("user_metadata") or not event.user_metadata.HasField("summary"):
        return None
    try:
        value = pydantic_data_converter.payload_converter.from_payload(
            event.user_metadata.summary, str
        )
    except Exception:  # a summary written by another SDK/converter: not worth failing the report
        return None
    return value if isinstance(value, str) else None


def describe_event(event: HistoryEvent) -> EventInfo:
    activity_type = child_type = None
    if event.HasField("activity_task_scheduled_event_attributes"):
        activity_type = event.activity_task_scheduled_event_attributes.activity_type.name
    elif event.HasField("start_child_workflow_execution_initiated_event_attributes"):
        attrs = event.start_child_workflow_execution_initiated_event_attributes
        child_type = attrs.workflow_type.name
    return EventInfo(
        event_id=event.event_id,
        event_type=_camel(event.event_type),
        activity_type=activity_type,
        child_workflow_type=child_type,
        summary=_summary(event),
    )


def _step_before(history: WorkflowHistory, event_id: int) -> EventInfo | None:
    found: EventInfo | None = None
    for event in history.events:
        if event.event_id >= event_id:
            break
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            info = describe_event(event)
            if info.step_id is not None:
                found = info
    return found


def diagnose(
    error: BaseException | str,
    history: WorkflowHistory,
    *,
    nondeterminism: bool = True,
    event_id: int | None = None,
) -> Divergence:
    """`event_id` overrides the one parsed from the message (for messages naming none)."""
    message = failure_message(error)
    wanted = event_id if event_id is not None else event_id_in(message)
    event = next((e for e in history.events if e.event_id == wanted), None)
    info = describe_event(event) if event is not None else None
    after = None
    if info is not None and info.step_id is None:
        after = _step_before(history, info.event_id)
    return Divergence(message=message, nondeterminism=nondeterminism, event=info, after=after)


def _describe(info: EventInfo) -> str:
    what = info.activity_type or info.child_workflow_type
    extra = f", {what}" if what else ""
    label = f' "{info.summary}"' if info.summary else ""
    return f"event {info.event_id} ({info.event_type}{extra}){label}"


def format_report(div: Divergence, history: WorkflowHistory) -> str:
    what = f"{history.workflow_id} ({len(history.events)} events)"
    if div.nondeterminism:
        lines = [f"nondeterminism: {what}: the current code diverged from the history"]
    else:
        lines = [f"replay failed: {what}: the workflow task failed during replay"]
    if div.event is None:
        lines.append("  event:    not identified (see the error below)")
    else:
        ev = div.event
        lines.append(f"  event:    {ev.event_id} {ev.event_type}")
        if ev.activity_type:
            lines.append(f"  activity: {ev.activity_type}")
        if ev.child_workflow_type:
            lines.append(f"  child:    {ev.child_workflow_type}")
        if ev.summary:
            lines.append(f"  summary:  {ev.summary}")
        if ev.step_id is not None:
            lines.append(f"  step:     {ev.step_id}")
        elif div.after is not None:
            lines.append(f"  step:     after step {div.after.step_id} — {_describe(div.after)}")
        else:
            lines.append("  step:     before the first step activity")
    lines.append(f"  error:    {div.message}")
    if div.nondeterminism:
        lines.append(f"  hint:     {HINT}")
    return "\n".join(lines)
