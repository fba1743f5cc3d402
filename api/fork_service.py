"""POST /jobs/{id}/fork: a new job from a finished one, with edits, reusing what still holds.

Like a rerun, the fork starts from the parent's exact input and definition snapshot, read back
from Temporal history (decrypted by the client's codec when payloads are encrypted). The edits
(an input patch, another definition version, step overrides, given outputs) are applied and
checked first; then fork_plan decides from the references which steps keep the parent's
outputs. The interpreter needs nothing new: reused and overridden outputs travel as
`reuse_steps`, a foreach's kept items as `reuse_items`, exactly as a rerun's do.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import uuid
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from api.auth import Caller
from api.fork_plan import PlanError, StartAt, inner_ids, parse_start, plan_fork
from api.fork_schemas import DefinitionVersion, ForkAccepted, ForkRequest
from api.fork_view import fork_info
from api.job_service import Conflict, NotFound, ServiceUnavailable, job_id_for
from api.rerun_service import carried_webhook, derived_row, original_input
from api.temporal_link import TemporalLink
from core import db, json_safety
from core.contracts import TERMINAL_STATUSES, InterpreterInput, ResolvedDefinition, RunOptions
from core.models import Job, utcnow
from core.redaction import redact
from core.settings import Settings
from core.temporal import start_job
from workflow_defs.catalog import Catalog
from workflow_defs.inputs import InputError, validate_input
from workflow_defs.loader import DefinitionError, validate_definition
from workflow_defs.schema import WorkflowDefinition


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def chosen_definition(
    body: ForkRequest, original: ResolvedDefinition, catalog: Catalog
) -> ResolvedDefinition:
    if body.definition == "original":
        return original
    version = body.definition.version if isinstance(body.definition, DefinitionVersion) else None
    loaded = catalog.definitions.get(original.name, version)
    if loaded is None:
        loc = ["definition", "version"] if version else ["definition"]
        raise PlanError(loc, catalog.definitions.not_found(original.name, version))
    return catalog.snapshot(loaded)


def _find_step(value: Any, step_id: str) -> dict[str, Any] | None:
    if isinstance(value, dict):
        if value.get("id") == step_id and isinstance(value.get("type"), str):
            return value
        children: Any = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return None
    for child in children:
        found = _find_step(child, step_id)
        if found is not None:
            return found
    return None


def overridden_definition(
    base: ResolvedDefinition,
    overrides: dict[str, dict[str, Any]],
    *,
    settings: Settings,
    catalog: Catalog,
) -> ResolvedDefinition:
    """`base` with each step's merge patch applied, validated as a definition file is."""
    if not overrides:
        return base
    data = copy.deepcopy(base.definition)
    for step_id, patch in overrides.items():
        step = _find_step(data["steps"], step_id)
        if step is None:
            raise PlanError(
                ["step_overrides", step_id], f"no step {step_id!r} in {base.name} {base.version}"
            )
        if "id" in patch and patch["id"] != step_id:
            raise PlanError(["step_overrides", step_id, "id"], "a step's id can't be overridden")
        merged = merge_patch(step, patch)
        step.clear()  # in place: the step sits in its block's list; null removed a field
        step.update(merged)
    try:
        loaded = validate_definition(
            data,
            source=f"{base.name} {base.version} with step_overrides",
            prompts_dir=settings.prompts_dir,
            has_service=catalog.services.has,
        )
    except DefinitionError as exc:
        first = exc.problems[0]
        ids = ", ".join(overrides)
        # One override: the error is its; several: the definition they make together is wrong.
        loc = ["step_overrides", *overrides] if len(overrides) == 1 else ["step_overrides"]
        raise PlanError(
            loc,
            f"the definition with step_overrides ({ids}) is invalid at {first.path}: "
            f"{first.message}",
        ) from None
    # Templates the parent ran keep their frozen text; ones the overrides name come from disk.
    prompts = {**loaded.prompts, **base.prompts}
    body = loaded.definition.model_dump(mode="json", by_alias=True, exclude_none=True)
    canonical = json.dumps({"definition": body, "prompts": prompts}, sort_keys=True)
    return base.model_copy(
        update={
            "definition": body,
            "prompts": prompts,
            "content_hash": "sha256:" + hashlib.sha256(canonical.encode()).hexdigest(),
        }
    )


def _top_level(step_ids: list[str], steps: list[dict[str, Any]], field: str) -> None:
    known = {s["id"] for s in steps}
    for step_id in step_ids:
        if step_id in known:
            continue
        inside = [s["id"] for s in steps if step_id in inner_ids(s)]
        hint = (
            f"it is inside {inside[0]!r}; override {inside[0]!r} instead"
            if inside
            else f"steps: {', '.join(s['id'] for s in steps)}"
        )
        raise PlanError([field, step_id], f"no top-level step {step_id!r}; {hint}")


async def fork_job(
    job_id: str,
    body: ForkRequest,
    *,
    settings: Settings,
    engine: Engine,
    catalog: Catalog,
    temporal: TemporalLink,
    caller: Caller,
    idempotency_key: str | None = None,
) -> tuple[ForkAccepted, bool]:
    """(the new job and its plan, whether an earlier request with the same Idempotency-Key
    already made it). Raises NotFound, Conflict, PlanError (→ 422), ServiceUnavailable."""
    unstorable = json_safety.problems(body.model_dump())
    if unstorable:
        path, message = unstorable[0]
        raise PlanError([str(p) for p in path], message)
    row = await asyncio.to_thread(db.get_job, engine, job_id)
    if row is None or not caller.owns(row.owner):
        raise NotFound(f"job {job_id!r} not found")
    new_id = str(uuid.uuid4())
    if idempotency_key:
        canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True)
        new_id = job_id_for(caller.name, f"fork\n{job_id}\n{canonical}\n{idempotency_key}")
        earlier = await asyncio.to_thread(db.get_job, engine, new_id)
        if earlier is not None:
            return accepted_fork(earlier), True
    if row.status not in TERMINAL_STATUSES:
        raise Conflict(f"job {job_id!r} is still {row.status}; cancel it or wait for it to finish")
    original = await original_input(temporal, job_id)
    chosen = chosen_definition(body, original.definition, catalog)
    snapshot = overridden_definition(
        chosen, body.step_overrides, settings=settings, catalog=catalog
    )
    steps = snapshot.definition["steps"]
    _top_level(list(body.output_overrides), steps, "output_overrides")
    try:
        new_input = validate_input(
            WorkflowDefinition.model_validate(snapshot.definition),
            merge_patch(original.input_data, body.input_patch),
        )
    except InputError as exc:
        field, message = exc.errors[0]
        raise PlanError(["input_patch", *field.split(".")], message) from None
    start = parse_start(body.from_step, steps) if body.from_step else None
    holder = {inner: s["id"] for s in steps for inner in inner_ids(s)}
    plan = plan_fork(
        parent_steps=original.definition.definition["steps"],
        parent_prompts=original.definition.prompts,
        steps=steps,
        prompts=snapshot.prompts,
        records=(row.job_metadata or {}).get("steps", []),
        parent_input=original.input_data,
        new_input=new_input,
        start=start,
        output_overrides=body.output_overrides,
        step_overrides=frozenset(holder.get(s, s) for s in body.step_overrides),
    )

    webhook, secret = await carried_webhook(settings, engine, original, job_id, new_id)
    new_row = derived_row(
        row,
        new_id,
        caller,
        webhook is not None,
        workflow_name=snapshot.name,
        workflow_version=snapshot.version,
        input_data=redact(new_input, truncate=False),
        fork_of=job_id,
        forked_from_step=_start_text(start),
        fork_reason=body.reason,
        fork_plan={"definition_version": snapshot.version, "steps": plan.steps},
    )
    try:
        await asyncio.to_thread(db.insert_job, engine, new_row, secret)
    except SQLAlchemyError as exc:
        # The link to the parent and the plan live only in the row: no row, no fork.
        raise ServiceUnavailable("database unavailable; the fork was not started") from exc
    inp = InterpreterInput(
        job_id=new_id,
        definition=snapshot,
        input_data=new_input,
        webhook=webhook,
        options=RunOptions(
            reuse_steps=plan.reuse_steps,
            reuse_items=plan.reuse_items,
            budget=original.options.budget,  # the parent submit's lowered budget still holds
        ),
        labels=original.labels,
    )
    try:
        client = await temporal.client()
        await start_job(
            client,
            settings,
            inp,
            memo={"fork_of": job_id, "from_step": _start_text(start), "owner": caller.name},
        )
    except Exception as exc:
        await asyncio.to_thread(db.delete_job, engine, new_id)
        raise ServiceUnavailable(
            f"could not start the fork in Temporal: {type(exc).__name__}"
        ) from exc
    return accepted_fork(new_row), False


def _start_text(start: StartAt | None) -> str | None:
    return start.text if start else None


def accepted_fork(row: Job) -> ForkAccepted:
    info = fork_info(row)
    assert info is not None  # only fork rows get here
    return ForkAccepted(
        job_id=row.job_id,
        status=row.status,  # type: ignore[arg-type]
        workflow_name=row.workflow_name,
        workflow_version=row.workflow_version,
        created_at=db.as_utc(row.created_at) or utcnow(),
        fork=info,
    )
