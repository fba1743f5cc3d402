"""`llmflow run --wait` and `llmflow jobs …`: following, showing, cancelling and rerunning jobs
from a terminal. They talk to the mirror (DATABASE_URL) and Temporal directly, so they work
with the gateway down; the operator at the terminal acts as an admin key would."""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from rich.markup import escape

from core.cli_render import console, job_summary, jobs_table, output_text, steps_table
from core.contracts import JobResult, Progress
from core.settings import Settings
from core.watch import following

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


async def follow_run(
    handle: Any, settings: Settings, *, mode: str, out: IO[str] = sys.stdout
) -> int:
    """Wait for a started job. `human`: the job id and Web UI link at once, a line per step as
    it starts and ends, streamed text as it comes, then the output. `json`: only the final
    job JSON. `quiet`: only the output."""
    job_id = handle.id
    con = console(out)
    human = mode == "human"
    if human:
        con.print(f"job [bold]{escape(job_id)}[/] started")
        con.print(f"Web UI: {settings.job_ui_url(job_id)}")

    async def progress() -> Progress | None:
        try:
            return await handle.query("progress", result_type=Progress)  # type: ignore[no-any-return]
        except Exception:
            return None  # not started yet, or already closed: the records tell

    async def outcome() -> tuple[JobResult | None, Any]:
        try:
            return await handle.result(), None
        except Exception as exc:
            return None, exc

    if human:
        async with following(
            job_id, out, redis_url=settings.redis_url, progress=progress
        ) as follower:
            result, failure = await outcome()
            records = result.model_dump(mode="json")["metadata"]["steps"] if result else []
            await follower.finish(records)
    else:
        result, failure = await outcome()
    if result is not None:
        return _finished(result, job_id, con, mode)
    return _failed(failure, job_id, con, mode)


def _finished(result: JobResult, job_id: str, con: Any, mode: str) -> int:
    data = result.model_dump(mode="json")
    if mode == "json":
        con.file.write(json.dumps({"job_id": job_id, **data}, indent=2) + "\n")
        return EXIT_OK
    if mode == "quiet":
        con.file.write(output_text(result.output) + "\n")
        return EXIT_OK
    meta = result.metadata
    con.print(
        f"[green]{result.status}[/] in {meta.duration_ms:,} ms · {meta.total_tokens:,} tokens"
        f" · ${meta.total_cost_usd:.6f}"
    )
    con.print(escape(output_text(result.output)))
    return EXIT_OK


def _failed(failure: Any, job_id: str, con: Any, mode: str) -> int:
    cause = getattr(failure, "cause", None)
    details = getattr(cause, "details", None) or ()
    error = details[0] if details and isinstance(details[0], dict) else None
    status = "failed"
    if error and error.get("type") == "WORKFLOW_TIMEOUT":
        status = "timed_out"
    elif cause is not None and type(cause).__name__ == "CancelledError":
        status = "cancelled"
    if error is None:
        error = {"type": type(cause or failure).__name__, "message": str(cause or failure)}
    if mode == "json":
        body = {"job_id": job_id, "status": status, "error": error}
        con.file.write(json.dumps(body, indent=2) + "\n")
        return EXIT_FAILED
    where = f" at step {error['step_id']}" if error.get("step_id") else ""
    print(
        f"job {job_id} {status}{where}: {error.get('type')}: {error.get('message')}",
        file=sys.stderr,
    )
    return EXIT_FAILED


async def progress_reader(settings: Settings, job_id: str) -> Any:
    """An async callable returning the run's Progress (None when it can't be read), or None
    when Temporal is unreachable: `jobs watch` then shows statuses only."""
    from core.payload_codec import PayloadKeyError
    from core.temporal import connect

    try:
        client = await connect(settings)
    except PayloadKeyError:
        raise
    except Exception:
        return None
    handle = client.get_workflow_handle(job_id)

    async def read() -> Progress | None:
        try:
            return await handle.query("progress", result_type=Progress)  # type: ignore[no-any-return]
        except Exception:
            return None

    return read


def show_job(row: Any, settings: Settings, *, as_json: bool, out: IO[str] = sys.stdout) -> int:
    if as_json:
        out.write(json.dumps(row.model_dump(mode="json"), indent=2) + "\n")
        return EXIT_OK
    con = console(out)
    for line in job_summary(row, settings.job_ui_url(row.job_id, row.run_id)):
        con.print(line)
    records = (row.job_metadata or {}).get("steps") or []
    if records:
        con.print(steps_table(records))
    if row.output is not None:
        con.print("[bold]output[/]")
        con.print(escape(output_text(row.output)))
    return EXIT_OK


def list_jobs(rows: list[Any], as_utc: Any, out: IO[str] = sys.stdout) -> int:
    con = console(out)
    if not rows:
        con.print("no jobs")
        return EXIT_OK
    con.print(jobs_table(rows, as_utc))
    return EXIT_OK


async def cancel_job(settings: Settings, job_id: str) -> int:
    from api import job_service
    from api.auth import Caller
    from api.temporal_link import TemporalLink

    temporal = TemporalLink(settings)
    try:
        await job_service.cancel_job(job_id, temporal=temporal, caller=Caller("cli", admin=True))
    except job_service.NotFound as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except job_service.Conflict as exc:
        print(f"job {job_id}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"cancel requested for job {job_id}")
    return EXIT_OK


async def rerun_job(settings: Settings, engine: Any, job_id: str, from_step: str | None) -> int:
    from api import job_service, rerun_service
    from api.auth import Caller
    from api.temporal_link import TemporalLink

    temporal = TemporalLink(settings)
    try:
        accepted, reused, _ = await rerun_service.rerun_job(
            job_id,
            from_step,
            settings=settings,
            engine=engine,
            temporal=temporal,
            caller=Caller("cli", admin=True),
        )
    except job_service.NotFound as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except (job_service.Conflict, job_service.BadField) as exc:
        print(f"job {job_id}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(accepted.job_id)
    if reused:
        print(f"reusing the outputs of: {', '.join(reused)}", file=sys.stderr)
    return EXIT_OK


async def fork_job(settings: Settings, engine: Any, job_id: str, args: Any) -> int:
    """`llmflow jobs fork <id>`: the body of POST /jobs/{id}/fork from flags; prints the new
    job id, then per step what the fork does and why (stderr)."""
    from pydantic import ValidationError

    from api import fork_service, job_service
    from api.auth import Caller
    from api.fork_plan import PlanError
    from api.fork_schemas import ForkRequest
    from api.temporal_link import TemporalLink
    from workflow_defs.catalog import load_catalog

    def by_step(pairs: list[str] | None, flag: str) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for pair in pairs or []:
            step_id, sep, text = pair.partition("=")
            if not sep:
                raise ValueError(f"{flag} takes STEP=JSON, got {pair!r}")
            found[step_id] = json.loads(text)
        return found

    definition = args.definition or "original"
    try:
        body = ForkRequest(
            from_step=args.from_step,
            input_patch=json.loads(args.input_patch) if args.input_patch else {},
            definition=definition
            if definition in ("original", "latest")
            else {"version": definition},
            step_overrides=by_step(args.step_override, "--step-override"),
            output_overrides=by_step(args.output_override, "--output-override"),
            reason=args.reason,
        )
    except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
        print(f"llmflow jobs fork: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        accepted, _ = await fork_service.fork_job(
            job_id,
            body,
            settings=settings,
            engine=engine,
            catalog=load_catalog(settings),
            temporal=TemporalLink(settings),
            caller=Caller("cli", admin=True),
        )
    except job_service.NotFound as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except PlanError as exc:
        print(f"job {job_id}: {'.'.join(exc.loc)}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (job_service.Conflict, job_service.ServiceUnavailable) as exc:
        print(f"job {job_id}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(accepted.job_id)
    for step_id, planned in accepted.fork.steps.items():
        print(f"{step_id}: {planned.action} ({planned.why})", file=sys.stderr)
    return EXIT_OK
