"""The `llmflow` command: dev, api, worker, run, validate, replay, schema, openapi, jobs."""

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
    from core.devstack import run_dev
    from core.settings import get_settings

    return run_dev(get_settings())


def _cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from core.settings import get_settings

    settings = get_settings()
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


def _cmd_jobs(args: argparse.Namespace) -> int:
    """Read the mirror (DATABASE_URL) directly: works with the gateway down."""
    from core import db
    from core.settings import get_settings

    settings = get_settings()
    engine = db.make_engine(settings.database_url)
    try:
        if args.action == "watch":
            if not args.job_id:
                print("usage: llmflow jobs watch <job_id>", file=sys.stderr)
                return 2
            from core.watch import watch_job

            return asyncio.run(
                watch_job(
                    args.job_id,
                    read_row=lambda job_id: db.get_job(engine, job_id),
                    redis_url=settings.redis_url,
                    out=sys.stdout,
                )
            )
        if args.action == "show":
            if not args.job_id:
                print("usage: llmflow jobs show <job_id>", file=sys.stderr)
                return 2
            row = db.get_job(engine, args.job_id)
            if row is None:
                print(f"job {args.job_id} not found in the mirror", file=sys.stderr)
                return 1
            print(json.dumps(row.model_dump(mode="json"), indent=2))
            return 0
        where = db.JobFilter(
            statuses=(args.status,) if args.status else None, workflow_name=args.workflow
        )
        rows = db.list_jobs(engine, where, limit=args.limit)
        for r in rows:
            created = db.as_utc(r.created_at)
            error = (r.error or {}).get("type", "")
            print(
                f"{r.job_id}  {r.status:<9}  {r.workflow_name} {r.workflow_version}  {created:%Y-%m-%d %H:%M:%S}  {error}"
            )
        return 0
    finally:
        engine.dispose()


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
    if not value:
        return {}
    path = Path(value)
    text = path.read_text() if path.exists() else value
    data = json.loads(text)
    if not isinstance(data, dict):
        raise SystemExit("--input must be a JSON object (or a file holding one)")
    return data  # type: ignore[no-any-return]


async def _run(args: argparse.Namespace) -> int:
    from core.contracts import InterpreterInput
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
    client = await connect(settings)
    job_id = str(uuid.uuid4())
    # The worker's mirror activity creates the job row, so CLI runs show up in the API too.
    inp = InterpreterInput(
        job_id=job_id, definition=catalog.snapshot(loaded), input_data=input_data
    )
    handle = await start_job(client, settings, inp)
    print(f"started job {job_id} ({loaded.name} {loaded.version})", file=sys.stderr)
    if not args.wait:
        print(job_id)
        return 0
    from core.watch import printing_deltas

    # A streamed step's text goes to stderr as it arrives; stdout stays the result's JSON.
    async with printing_deltas(settings.redis_url, job_id, sys.stderr):
        try:
            result = await handle.result()
        except Exception as exc:
            cause = getattr(exc, "cause", None)
            print(f"job {job_id} failed: {cause or exc}", file=sys.stderr)
            return 1
    print(json.dumps(result.model_dump(mode="json"), indent=2))
    return 0


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
    jobs = sub.add_parser("jobs", help="list jobs from the mirror, show one, or watch one live")
    jobs.add_argument("action", nargs="?", choices=["list", "show", "watch"], default="list")
    jobs.add_argument("job_id", nargs="?")
    jobs.add_argument("--status")
    jobs.add_argument("--workflow", help="filter by workflow name")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.set_defaults(func=_cmd_jobs)
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
    run.add_argument("--wait", action="store_true", help="wait and print the result")
    run.set_defaults(func=_cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from workflow_defs.loader import DefinitionError

        if isinstance(exc, DefinitionError):
            print(f"invalid workflow definition(s):\n{exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
