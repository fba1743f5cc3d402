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

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import NondeterminismError

from core.payload_codec import (
    META_KEY_ID,
    PayloadDecodeError,
    PayloadKeyError,
    data_converter,
    is_encrypted,
)
from core.settings import Settings, get_settings
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


async def _unreadable(history: WorkflowHistory, converter: DataConverter) -> str | None:
    """Why the run's input can't be decrypted here (replaying would only report that as a
    divergence); None when it can, or is not encrypted."""
    first = history.events[0]
    if not first.HasField("workflow_execution_started_event_attributes"):
        return None
    for payload in first.workflow_execution_started_event_attributes.input.payloads:
        if not is_encrypted(payload):
            continue
        if converter.payload_codec is None:
            key_id = payload.metadata.get(META_KEY_ID, b"").decode("utf-8", "replace")
            return (
                f"its payloads are encrypted (key id {key_id!r}); set LLMFLOW_PAYLOAD_KEY, "
                "or LLMFLOW_PAYLOAD_OLD_KEYS, to the key that sealed them"
            )
        try:
            await converter.payload_codec.decode([payload])
        except PayloadDecodeError as exc:
            return str(exc)
    return None


async def readable_summaries(history: WorkflowHistory, converter: DataConverter) -> WorkflowHistory:
    """The history with its events' summaries decoded by the converter's codec (encrypted
    payloads); one that does not decode stays as it is (the report then names no step)."""
    codec = converter.payload_codec
    if codec is None:
        return history
    events = []
    for event in history.events:
        if event.HasField("user_metadata") and event.user_metadata.HasField("summary"):
            try:
                [summary] = await codec.decode([event.user_metadata.summary])
            except Exception:
                summary = event.user_metadata.summary
            copy = HistoryEvent()
            copy.CopyFrom(event)
            copy.user_metadata.summary.CopyFrom(summary)
            event = copy
        events.append(event)
    return WorkflowHistory(history.workflow_id, events)


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
        # The client's converter, or the environment's: with LLMFLOW_PAYLOAD_KEY (or only
        # LLMFLOW_PAYLOAD_OLD_KEYS) it opens encrypted histories; plain ones replay either way.
        converter = (
            client.data_converter
            if client is not None
            else data_converter(settings or get_settings())
        )
    except PayloadKeyError as exc:
        print(f"replay: {exc}", file=err)
        return EXIT_ERROR
    try:
        history = await _history_for(target, client, settings)
    except ReplayInputError as exc:
        print(f"replay: {exc}", file=err)
        return EXIT_ERROR

    unreadable = await _unreadable(history, converter)
    if unreadable:
        print(f"replay: {history.workflow_id}: {unreadable}", file=err)
        return EXIT_ERROR
    rep = replayer(workflows, runtime=runtime, data_converter=converter)
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
    # The report names steps by their activities' summaries, which are encrypted too.
    readable = await readable_summaries(history, converter)
    divergence = diagnose(
        failure,
        readable,
        nondeterminism=isinstance(failure, NondeterminismError),
        event_id=event_id,
    )
    print(format_report(divergence, readable), file=err)
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
