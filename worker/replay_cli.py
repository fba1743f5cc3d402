"""`llmflow replay <history.json | job_id>`: replay one history against the current code.

Exit codes: 0 replayed OK, 1 the code diverged from the history (report on stderr),
2 the history could not be had (missing/bad file, unknown job, Temporal unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from temporalio.client import Client, WorkflowHistory
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import NondeterminismError

from core.settings import Settings
from worker.replay import (
    HistoryFileError,
    fetch_history,
    first_failing_event,
    load_history_file,
    quiet_runtime,
    replayer,
)
from worker.replay_report import diagnose, event_id_in, failure_message, format_report

EXIT_OK, EXIT_DIVERGED, EXIT_ERROR = 0, 1, 2


class ReplayInputError(Exception):
    """The history to replay could not be loaded or fetched (exit 2)."""


def _looks_like_path(target: str) -> bool:
    # Job ids are uuids: anything with a separator or a .json suffix was meant as a file.
    return target.endswith(".json") or "/" in target or "\\" in target


def _history_from_file(target: str) -> WorkflowHistory | None:
    """The history in file `target`; None when `target` names no file (a job id)."""
    path = Path(target)
    if path.is_file():
        try:
            return load_history_file(path)
        except (HistoryFileError, OSError, UnicodeDecodeError) as exc:
            raise ReplayInputError(f"{target}: {exc}") from None
    if path.exists():
        raise ReplayInputError(f"{target}: not a file")
    if _looks_like_path(target):
        raise ReplayInputError(f"{target}: no such file")
    return None


async def _history_for(
    target: str, client: Client | None, settings: Settings | None
) -> WorkflowHistory:
    from_file = _history_from_file(target)
    if from_file is not None:
        return from_file
    if client is None:
        from core.settings import get_settings
        from core.temporal import connect

        settings = settings or get_settings()
        try:
            client = await connect(settings)
        except Exception as exc:
            raise ReplayInputError(
                f"cannot reach Temporal at {settings.temporal_address}: {exc}"
            ) from None
    try:
        history = await fetch_history(client, target)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ReplayInputError(
                f"no workflow with id {target!r} in namespace {client.namespace!r} "
                "(and no such file)"
            ) from None
        raise ReplayInputError(f"fetching the history of {target!r} failed: {exc}") from None
    if not history.events:
        raise ReplayInputError(f"workflow {target!r} has no history events")
    return history


async def run_replay(
    target: str,
    *,
    client: Client | None = None,
    settings: Settings | None = None,
    workflows: Sequence[type] | None = None,
    runtime: Runtime | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Replay `target` (a history file or a job id); print the outcome; return the exit code.

    `client`/`settings` default to a connection from the environment; `workflows` to the
    shipped workflow classes (tests pass a divergent one).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        history = await _history_for(target, client, settings)
    except ReplayInputError as exc:
        print(f"replay: {exc}", file=err)
        return EXIT_ERROR

    rep = replayer(workflows, runtime=runtime)
    try:
        result = await rep.replay_workflow(history, raise_on_replay_failure=False)
    except Exception as exc:  # malformed history that Core refuses outright
        print(f"replay: cannot replay {history.workflow_id}: {exc}", file=err)
        return EXIT_ERROR
    failure = result.replay_failure
    if failure is None:
        print(f"replayed OK: {history.workflow_id} ({len(history.events)} events)", file=out)
        return EXIT_OK

    message = failure_message(failure)
    if "is not registered on this worker" in message:
        print(f"replay: {history.workflow_id}: {message}", file=err)
        return EXIT_ERROR
    event_id = event_id_in(message)
    if event_id is None:
        event_id = await first_failing_event(history, rep)
    divergence = diagnose(
        failure,
        history,
        nondeterminism=isinstance(failure, NondeterminismError),
        event_id=event_id,
    )
    print(format_report(divergence, history), file=err)
    return EXIT_DIVERGED


def cmd_replay(
    args: argparse.Namespace,
    *,
    settings: Settings | None = None,
    workflows: Sequence[type] | None = None,
) -> int:
    # Core's own WARN lines and the SDK's tracebacks for the failed task would bury the report.
    sdk_log = logging.getLogger("temporalio")
    level = sdk_log.level
    sdk_log.setLevel(logging.CRITICAL)
    try:
        return asyncio.run(
            run_replay(args.target, settings=settings, workflows=workflows, runtime=quiet_runtime())
        )
    finally:
        sdk_log.setLevel(level)
