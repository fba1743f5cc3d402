"""One handler per step type. A new step type is a module here plus its line below (and its
model in workflow_defs/schema.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from worker.steps import (
    activity,
    foreach,
    loop,
    parallel,
    sub_workflow,
    switch,
    transform,
    wait,
    waits,
)
from worker.steps.base import Runner, StepAt, StepOutcome

Handler = Callable[[Runner, Any, StepAt], Awaitable[StepOutcome]]

HANDLERS: dict[str, Handler] = {
    "llm": activity.run,
    "external_api": activity.run,
    "http": activity.run,
    "webhook": activity.run,
    "transform": transform.run,
    "parallel": parallel.run,
    "foreach": foreach.run,
    "switch": switch.run,
    "loop": loop.run,
    "wait": wait.run,
    "approval": waits.run_approval,
    "wait_for_event": waits.run_event,
    "sub_workflow": sub_workflow.run,
}
