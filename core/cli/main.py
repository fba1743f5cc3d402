"""The `llmflow` command: dev, api, worker, run, validate, replay, schema, openapi, jobs, db."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any


def _cmd_dev(args: argparse.Namespace) -> int:
    from core.cli.devstack import run_dev
    from core.settings import get_settings

    return run_dev(get_settings())


def _cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from api.auth import check_auth_config
    from core import schema_migrations
    from core.settings import get_settings

    settings = get_settings()
    check_auth_config(settings)  # before uvicorn: its traceback would bury the one line
    if not settings.database_auto_migrate:
        # Likewise; the gateway's start checks it again.
        schema_migrations.check_at_start(settings.database_url)
    uvicorn.run(
        "api.main:app_from_env",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_level=settings.log_level.lower(),
        # uvloop and httptools (uvicorn[standard]): the event loop and HTTP parser in C.
        loop="auto",
        http="auto",
        # Pollers and load balancers reuse connections: keep idle ones longer than a typical
        # balancer's idle timeout (60 s), so the server is never the side that closes one a
        # client is just reusing (the client then sees a dropped request).
        timeout_keep_alive=75,
    )
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from worker.main import run_worker

    asyncio.run(run_worker())
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from core.settings import get_settings
    from workflow_defs.loader import (
        DefinitionError,
        LoadedDefinition,
        definition_files,
        load_definition_file,
    )
    from workflow_defs.services import load_services
    from workflow_defs.version_compat import directory_warnings

    settings = get_settings()
    services = load_services(settings.workflow_defs_dir / "services.json")
    files = [Path(f) for f in args.files] or definition_files(settings.workflow_defs_dir)
    results: dict[Path, LoadedDefinition | DefinitionError] = {}
    for path in files:
        try:
            results[path] = load_definition_file(
                path, prompts_dir=settings.prompts_dir, has_service=services.has
            )
        except DefinitionError as exc:
            results[path] = exc
    # Warnings only: a new version that refuses input an older one in the same directory
    # accepted (docs/dsl.md, "Versioning a workflow").
    narrowed = directory_warnings(
        {p: r.definition for p, r in results.items() if isinstance(r, LoadedDefinition)}
    )
    failed = 0
    for path, result in results.items():
        if isinstance(result, DefinitionError):
            failed += 1
            print(f"✗ {path}")
            for problem in result.problems:
                print(f"    {problem.path}: {problem.message}")
            continue
        steps = len(result.definition.steps)
        print(f"✓ {path}  ({result.name} {result.version}, {steps} steps)")
        for warning in [*result.warnings, *narrowed.get(path, [])]:
            print(f"    warning {warning.path}: {warning.message}")
    return 1 if failed else 0


def _fork_arguments(jobs: argparse.ArgumentParser) -> None:
    """The flags of `llmflow jobs fork` (the body of POST /jobs/{id}/fork)."""
    jobs.add_argument("--input-patch", help="fork: a JSON merge patch onto the input")
    jobs.add_argument(
        "--definition", help="fork: original (default), latest, or a version such as 3.1.0"
    )
    jobs.add_argument(
        "--step-override",
        action="append",
        metavar="STEP=JSON",
        help='fork: merge JSON into a step\'s definition, e.g. b=\'{"config": {"temperature": 0}}\'',
    )
    jobs.add_argument(
        "--output-override",
        action="append",
        metavar="STEP=JSON",
        help="fork: don't run STEP, use JSON as its output",
    )
    jobs.add_argument("--reason", help="fork: why (kept with the new job)")


def _cmd_jobs(args: argparse.Namespace) -> int:
    """Read the mirror (DATABASE_URL) directly: works with the gateway down."""
    from core import db
    from core.cli import jobs as cli_jobs
    from core.settings import get_settings

    settings = get_settings()
    needs_id = args.action in ("show", "watch", "cancel", "rerun", "fork")
    if needs_id and not args.job_id:
        print(f"usage: llmflow jobs {args.action} <job_id>", file=sys.stderr)
        return 2
    engine = db.make_engine(settings.database_url)
    try:
        if args.action == "watch":
            from core.cli.watch import watch_job

            async def watch() -> int:
                progress = await cli_jobs.progress_reader(settings, args.job_id)
                return await watch_job(
                    args.job_id,
                    read_row=lambda job_id: db.get_job(engine, job_id),
                    redis_url=settings.redis_url,
                    out=sys.stdout,
                    progress=progress,
                )

            return _exit_now(asyncio.run(watch()))
        if args.action == "cancel":
            return _exit_now(asyncio.run(cli_jobs.cancel_job(settings, args.job_id)))
        if args.action == "rerun":
            return _exit_now(
                asyncio.run(cli_jobs.rerun_job(settings, engine, args.job_id, args.from_step))
            )
        if args.action == "fork":
            return _exit_now(asyncio.run(cli_jobs.fork_job(settings, engine, args.job_id, args)))
        if args.action == "show":
            row = db.get_job(engine, args.job_id)
            if row is None:
                print(f"job {args.job_id} not found in the mirror", file=sys.stderr)
                return 1
            return cli_jobs.show_job(row, settings, as_json=args.json)
        where = db.JobFilter(
            statuses=(args.status,) if args.status else None, workflow_name=args.workflow
        )
        rows = db.list_jobs(engine, where, limit=args.limit)
        if args.json:
            print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
            return 0
        return cli_jobs.list_jobs(rows, db.as_utc)
    finally:
        engine.dispose()


def _cmd_db(args: argparse.Namespace) -> int:
    """Schema migrations of the mirror (DATABASE_URL); exit 1 unless it ends at head."""
    from sqlalchemy.exc import OperationalError

    from core import db, schema_migrations
    from core.settings import get_settings

    engine = db.make_engine(get_settings().database_url)
    try:
        before = schema_migrations.current(engine)
        after = schema_migrations.upgrade(engine) if args.action == "upgrade" else before
    except OperationalError as exc:
        reason = " ".join(str(exc.orig).split())
        raise UsageError(f"cannot reach the database (DATABASE_URL): {reason}") from None
    finally:
        engine.dispose()
    at_head, line = schema_migrations.describe(after)
    if args.action == "upgrade" and at_head:
        line = f"already at {line}" if before == after else f"upgraded {before or 'none'} → {line}"
    print(line, file=sys.stdout if at_head else sys.stderr)
    return 0 if at_head else 1


class UsageError(Exception):
    """A mistake in how the command was called: one line on stderr, exit code 2."""


def _cmd_replay(args: argparse.Namespace) -> int:
    from worker.replay_cli import cmd_replay

    return cmd_replay(args)


def _cmd_schema(args: argparse.Namespace) -> int:
    from workflow_defs.schema import WorkflowDefinition

    print(json.dumps(WorkflowDefinition.model_json_schema(by_alias=True), indent=2))
    return 0


def openapi_document() -> dict[str, Any]:
    """The gateway's OpenAPI document, independent of the environment's keys and database."""
    from api.main import create_app
    from core.settings import Settings

    # Nothing is connected: create_app only builds the routes (the lifespan never runs).
    app = create_app(Settings(environment="test", api_keys=[], database_url="sqlite://"))
    return app.openapi()


def render_openapi() -> str:
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


def _cmd_openapi(args: argparse.Namespace) -> int:
    text = render_openapi()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _read_input(value: str | None) -> dict[str, Any]:
    """`--input '{"topic": "x"}'`, `--input data.json` or `--input @data.json`."""
    if not value:
        return {}
    path = Path(value.removeprefix("@"))
    is_file = value.startswith("@") or (
        not value.lstrip().startswith(("{", "[")) and (path.exists() or bool(path.suffix))
    )
    if is_file:
        try:
            text = path.read_text()
        except OSError as exc:
            raise UsageError(f"--input: cannot read {path}: {exc.strerror}") from None
    else:
        text = value
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--input is not JSON ({exc}); give a JSON object or a file") from None
    if not isinstance(data, dict):
        raise UsageError("--input must be a JSON object (or a file holding one)")
    return data


async def _run(args: argparse.Namespace) -> int:
    from core.contracts import InterpreterInput, RunOptions
    from core.settings import get_settings
    from core.temporal import connect, start_job
    from workflow_defs.catalog import load_catalog
    from workflow_defs.inputs import InputError, validate_input

    settings = get_settings()
    catalog = load_catalog(settings)
    loaded = catalog.definitions.get(args.workflow, args.version)
    if loaded is None:
        print(catalog.definitions.not_found(args.workflow, args.version), file=sys.stderr)
        return 2
    try:
        input_data = validate_input(loaded.definition, _read_input(args.input))
    except InputError as exc:
        print(f"invalid input: {exc}", file=sys.stderr)
        return 2
    budget = _submit_budget(args, loaded.definition.budget)
    from core.payload_codec import PayloadKeyError

    try:
        client = await connect(settings)
    except PayloadKeyError:
        raise  # a key setting to fix, not an unreachable server
    except Exception as exc:
        raise UsageError(
            f"cannot reach Temporal at {settings.temporal_address} ({type(exc).__name__}): "
            "start the stack with `make dev`, or set TEMPORAL_ADDRESS"
        ) from None
    job_id = str(uuid.uuid4())
    inp = InterpreterInput(
        job_id=job_id,
        definition=catalog.snapshot(loaded),
        input_data=input_data,
        options=RunOptions(budget=budget),
    )
    await asyncio.to_thread(_record_queued, settings, inp)
    handle = await start_job(client, settings, inp)
    if not args.wait:
        print(f"started job {job_id} ({loaded.name} {loaded.version})", file=sys.stderr)
        print(job_id)
        return 0
    from core.cli.jobs import follow_run

    mode = "json" if args.json else "quiet" if args.quiet else "human"
    return await follow_run(handle, settings, mode=mode)


def _submit_budget(args: argparse.Namespace, defined: Any) -> Any:
    """The run's budget from --budget-usd/--budget-tokens, under the gateway's rule: it may only
    lower the definition's (a limit left out is one the definition's value keeps)."""
    from pydantic import ValidationError

    from api.job_service import BadField, check_lowers
    from core.budget import BudgetSpec

    if args.budget_usd is None and args.budget_tokens is None:
        return None
    try:
        budget = BudgetSpec(
            max_cost_usd=args.budget_usd
            if args.budget_usd is not None
            else getattr(defined, "max_cost_usd", None),
            max_tokens=args.budget_tokens
            if args.budget_tokens is not None
            else getattr(defined, "max_tokens", None),
        )
        check_lowers(defined, budget)
    except ValidationError as exc:
        raise UsageError(f"invalid budget: {exc.errors()[0]['msg']}") from None
    except BadField as exc:
        flag = {"budget.max_cost_usd": "--budget-usd", "budget.max_tokens": "--budget-tokens"}
        raise UsageError(f"{flag.get(exc.field, exc.field)}: {exc}") from None
    return budget


def _record_queued(settings: Any, inp: Any) -> None:
    """The job's row, as the gateway writes it (queued, with its input), so a CLI run lists
    and reads like any other. Without the database the job still runs: the worker's mirror
    write creates the row (without the input)."""
    from core import db
    from core.models import Job, utcnow
    from core.redaction import redact

    now = utcnow()
    row = Job(
        job_id=inp.job_id,
        workflow_name=inp.definition.name,
        workflow_version=inp.definition.version,
        status="queued",
        input_data=redact(inp.input_data, truncate=False),
        owner="cli",
        created_at=now,
        updated_at=now,
    )
    engine = db.make_engine(settings.database_url)
    try:
        db.insert_job(engine, row)
    except Exception as exc:
        print(f"note: job row not written ({type(exc).__name__}); the worker will", file=sys.stderr)
    finally:
        engine.dispose()


def _cmd_run(args: argparse.Namespace) -> int:
    return _exit_now(asyncio.run(_run(args)))


def _exit_now(code: int) -> int:
    """Exit without interpreter finalization. The Temporal client's native runtime can still
    hold threads that call into Python while it tears down, which aborted 3 runs in 53
    (`PyGILState_Release`, exit 134) after the result was printed; the exit code must be
    the job's."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmflow", description="Durable LLM workflows on Temporal."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "dev", help="run Temporal dev server + worker + gateway in the foreground"
    ).set_defaults(func=_cmd_dev)
    api = sub.add_parser("api", help="run the gateway")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.set_defaults(func=_cmd_api)
    sub.add_parser("worker", help="run one worker").set_defaults(func=_cmd_worker)
    val = sub.add_parser("validate", help="validate definition files (default: the shipped ones)")
    val.add_argument("files", nargs="*")
    val.set_defaults(func=_cmd_validate)
    sub.add_parser("schema", help="print the JSON Schema of the DSL").set_defaults(func=_cmd_schema)
    oas = sub.add_parser(
        "openapi", help="print the gateway's OpenAPI document (committed as clients/openapi.json)"
    )
    oas.add_argument("-o", "--output", help="write it to this file instead of stdout")
    oas.set_defaults(func=_cmd_openapi)
    jobs = sub.add_parser(
        "jobs", help="list jobs from the mirror; show, watch, cancel, rerun or fork one"
    )
    jobs.add_argument(
        "action",
        nargs="?",
        choices=["list", "show", "watch", "cancel", "rerun", "fork"],
        default="list",
    )
    jobs.add_argument("job_id", nargs="?")
    jobs.add_argument("--status")
    jobs.add_argument("--workflow", help="filter by workflow name")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.add_argument("--json", action="store_true", help="the raw rows (list, show)")
    jobs.add_argument("--from-step", help="rerun, fork: reuse the outputs of the steps before it")
    _fork_arguments(jobs)
    jobs.set_defaults(func=_cmd_jobs)
    dbp = sub.add_parser("db", help="the mirror's schema: upgrade it to head, or show its revision")
    dbp.add_argument("action", choices=["upgrade", "current"])
    dbp.set_defaults(func=_cmd_db)
    rep = sub.add_parser(
        "replay",
        help="replay a history (file from `temporal workflow show -o json`, or a job id) "
        "against the current interpreter; exit 1 on nondeterminism",
    )
    rep.add_argument("target", help="history JSON file, or a job id fetched from Temporal")
    rep.set_defaults(func=_cmd_replay)
    run = sub.add_parser("run", help="start a job directly in Temporal")
    run.add_argument("workflow")
    run.add_argument("--input", help="JSON object, or a file holding one")
    run.add_argument("--version")
    run.add_argument("--budget-usd", type=float, help="lower the definition's max_cost_usd")
    run.add_argument("--budget-tokens", type=int, help="lower the definition's max_tokens")
    run.add_argument("--wait", action="store_true", help="follow the job and print the result")
    shown = run.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="with --wait: only the final job JSON")
    shown.add_argument("--quiet", action="store_true", help="with --wait: only the output")
    run.set_defaults(func=_cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = _expected_error(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2


def _expected_error(exc: Exception) -> str | None:
    """One line for the mistakes a user makes (configuration, input, a definition), instead of
    a traceback; None for everything else."""
    from pydantic import ValidationError

    from api.auth import ProductionWithoutKeys
    from core.payload_codec import PayloadKeyError
    from core.schema_migrations import SchemaNotAtHead
    from workflow_defs.loader import DefinitionError

    if isinstance(exc, UsageError | ProductionWithoutKeys | PayloadKeyError | SchemaNotAtHead):
        return str(exc)
    if isinstance(exc, DefinitionError):
        return f"invalid workflow definition(s):\n{exc}"
    if isinstance(exc, ValidationError) and exc.title == "Settings":
        # Settings come from the environment: name the variable, not the field.
        return "; ".join(
            f"{str(e['loc'][0]).upper() if e['loc'] else 'settings'}: {e['msg']}"
            for e in exc.errors()
        )
    return None


if __name__ == "__main__":
    sys.exit(main())
