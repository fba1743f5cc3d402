"""What a fork runs again and what it takes from its parent run, step by step.

Pure: it reads the two definitions (as their snapshots store them), the parent's step records
and the two inputs, and decides from the `${…}` references each step holds (its config, its
`when`, its inner steps and the prompt templates it renders), never from step names or types:

- a step at or after `from_step` runs again;
- a step given in `output_overrides` is not run: its output is the given value;
- a step before `from_step` reuses the parent's recorded output unless a reference it reads now
  resolves to something else (an input field the patch changed, an overridden output that
  differs, a step that itself runs again: transitively, in definition order), or its definition
  changed (its config hash differs), or the parent has no completed output for it.

`${context.…}` (job id, start time) differs in every run and is not counted: a reused step is
the parent's result for the same input and definition, exactly as rerun `from_step` reuses it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from workflow_defs.references import (
    ReferenceSyntaxError,
    find_references,
    format_path,
    is_missing,
    parse_path,
    walk,
)

Action = Literal["reused", "rerun", "overridden"]
PROMPT_KEYS = ("prompt_template", "system_prompt_template")


class PlanError(ValueError):
    """A fork request that can't be honoured; `loc` names the body field at fault."""

    def __init__(self, loc: str | list[str], message: str) -> None:
        super().__init__(message)
        self.loc = [loc] if isinstance(loc, str) else list(loc)


@dataclass(frozen=True)
class StartAt:
    """Where `from_step` points: a top-level step, optionally one item of a foreach."""

    text: str
    step: str
    item: int | None = None


@dataclass
class ForkPlan:
    steps: dict[str, dict[str, str]] = field(default_factory=dict)
    reuse_steps: dict[str, Any] = field(default_factory=dict)
    reuse_items: dict[str, dict[str, Any]] = field(default_factory=dict)

    def set(self, step_id: str, action: Action, why: str) -> None:
        self.steps[step_id] = {"action": action, "why": why}


def inner_ids(step: dict[str, Any]) -> set[str]:
    """The ids of every step nested in a control step's blocks, at any depth."""
    found: set[str] = set()

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("id"), str) and isinstance(value.get("type"), str):
                found.add(value["id"])
            for inner in value.values():
                visit(inner)
        elif isinstance(value, list):
            for inner in value:
                visit(inner)

    visit(step.get("config"))
    return found


def parse_start(text: str, steps: list[dict[str, Any]]) -> StartAt:
    """`generate_contacts`, `enrich[3]`, `enrich[3].summarize`, `branches.inner` → StartAt."""
    try:
        path = parse_path(text)
    except ReferenceSyntaxError as exc:
        raise PlanError("from_step", str(exc)) from None
    by_id = {s["id"]: s for s in steps}
    head = path[0]
    if not isinstance(head, str) or head not in by_id:
        holders = [s["id"] for s in steps if head in inner_ids(s)]
        hint = (
            f"; it is inside {holders[0]!r}: use {holders[0]}[<item>].{head} for a foreach item"
            if holders
            else f"; steps: {', '.join(by_id)}"
        )
        raise PlanError("from_step", f"no top-level step {head!r}{hint}")
    step, rest = by_id[head], path[1:]
    item: int | None = None
    if rest and isinstance(rest[0], int):
        if step["type"] != "foreach":
            raise PlanError("from_step", f"{head!r} is a {step['type']} step, not a foreach")
        item, rest = rest[0], rest[1:]
        if item < 0:
            raise PlanError("from_step", f"item index must be 0 or more, got {item}")
    inner = inner_ids(step)
    for seg in rest:
        if not isinstance(seg, str) or seg not in inner:
            raise PlanError("from_step", f"{format_path(path)}: {seg!r} is not a step in {head!r}")
    return StartAt(text, head, item)


def prompt_names(step: dict[str, Any]) -> list[str]:
    names: list[str] = []

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key in PROMPT_KEYS and isinstance(inner, str):
                    names.append(inner)
                else:
                    visit(inner)
        elif isinstance(value, list):
            for inner in value:
                visit(inner)

    visit(step)
    return sorted(set(names))


def config_hash(step: dict[str, Any], prompts: dict[str, str]) -> str:
    """The step's definition and the prompt text it renders, canonical JSON, sha256."""
    used = {name: prompts.get(name) for name in prompt_names(step)}
    canonical = json.dumps({"step": step, "prompts": used}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def references(step: dict[str, Any], prompts: dict[str, str]) -> list[tuple[str, list[Any]]]:
    found = find_references(step)
    for name in prompt_names(step):
        try:
            found.extend(find_references(prompts.get(name, "")))
        except ReferenceSyntaxError:
            continue  # a placeholder the template engine reads, not a reference
    return found


def _view(output: Any) -> dict[str, Any]:
    """What `${steps.<id>…}` reads of an output (the worker's step_view, without the text)."""
    view: dict[str, Any] = dict(output) if isinstance(output, dict) else {}
    view["output"] = output
    return view


def _same(old: Any, new: Any, path: list[Any]) -> bool:
    a, b = walk(old, path), walk(new, path)
    return not is_missing(a) and not is_missing(b) and a == b


@dataclass
class _Known:
    """What the checks of one fork compare against."""

    parent_input: dict[str, Any]
    new_input: dict[str, Any]
    parent_outputs: dict[str, Any]
    output_overrides: dict[str, Any]
    holder: dict[str, str]  # inner step id → the top-level step holding it
    rerun: set[str] = field(default_factory=set)


def plan_fork(
    *,
    parent_steps: list[dict[str, Any]],
    parent_prompts: dict[str, str],
    steps: list[dict[str, Any]],
    prompts: dict[str, str],
    records: list[dict[str, Any]],
    parent_input: dict[str, Any],
    new_input: dict[str, Any],
    start: StartAt | None,
    output_overrides: dict[str, Any],
    step_overrides: frozenset[str] = frozenset(),
) -> ForkPlan:
    """`steps`/`prompts`: what the fork runs; `parent_*`: what the parent ran; `records`: the
    parent's step records (job metadata)."""
    top = {r["id"]: r for r in records if isinstance(r, dict) and r.get("parent") is None}
    parent_by_id = {s["id"]: s for s in parent_steps}
    forced: dict[str, str] = {}
    while True:
        known = _Known(
            parent_input,
            new_input,
            {sid: r.get("output") for sid, r in top.items()},
            output_overrides,
            {inner: s["id"] for s in steps for inner in inner_ids(s)},
        )
        plan = ForkPlan()
        for index, step in enumerate(steps):
            sid = step["id"]
            why = _reasons_to_rerun(
                step,
                prompts,
                parent_by_id.get(sid),
                parent_prompts,
                top.get(sid),
                known,
                overridden_config=sid in step_overrides,
            )
            if sid in forced:
                why.insert(0, forced[sid])
            _plan_step(plan, known, index, step, steps, start, why, top.get(sid))
        more = _parallels_to_rerun(plan, steps, prompts, known)
        if not more.keys() - forced.keys():
            return plan
        forced.update(more)


def _plan_step(
    plan: ForkPlan,
    known: _Known,
    index: int,
    step: dict[str, Any],
    steps: list[dict[str, Any]],
    start: StartAt | None,
    why: list[str],
    record: dict[str, Any] | None,
) -> None:
    sid = step["id"]
    start_index = [s["id"] for s in steps].index(start.step) if start else len(steps)
    if sid in known.output_overrides:
        plan.set(sid, "overridden", "output_overrides gives its output; not run")
        plan.reuse_steps[sid] = known.output_overrides[sid]
        return
    if start is not None and index > start_index:
        plan.set(sid, "rerun", f"after from_step {start.text!r}")
        known.rerun.add(sid)
        return
    if start is not None and index == start_index and start.item is None:
        # It runs again anyway; what else changed for it is still worth saying.
        plan.set(sid, "rerun", "; ".join(["from_step", *_edits(why)]))
        known.rerun.add(sid)
    elif start is not None and index == start_index:
        _plan_items(plan, step, record, start, why)
        known.rerun.add(sid)
    elif why:
        plan.set(sid, "rerun", "; ".join(why))
        known.rerun.add(sid)
    else:
        plan.set(sid, "reused", "its references and definition are unchanged")
        plan.reuse_steps[sid] = (record or {}).get("output")


def _parallels_to_rerun(
    plan: ForkPlan, steps: list[dict[str, Any]], prompts: dict[str, str], known: _Known
) -> dict[str, str]:
    """A parallel's branch steps stay referable by id after it, but a reused (or overridden)
    parallel keeps only its branches' outputs: when a step that runs again reads one of its
    branch steps, the parallel must run again too."""
    needed: dict[str, str] = {}
    for step in steps:
        if step["id"] not in known.rerun:
            continue
        for raw, path in references(step, prompts):
            if path[0] != "steps" or len(path) < 2 or not isinstance(path[1], str):
                continue
            holder = known.holder.get(path[1])
            if holder is None or holder == step["id"]:
                continue
            if holder in known.output_overrides:
                raise PlanError(
                    ["output_overrides", holder],
                    f"{step['id']!r} runs again and reads {raw}, a step inside {holder!r}; "
                    f"an overridden {holder!r} has no inner step outputs to give",
                )
            if plan.steps.get(holder, {}).get("action") == "reused":
                needed.setdefault(
                    holder, f"{step['id']!r} runs again and reads {raw}, a step inside it"
                )
    return needed


def _edits(reasons: list[str]) -> list[str]:
    """The reasons that come from the request's edits (not from the parent's records)."""
    return [r for r in reasons if "parent run" not in r]


def _reasons_to_rerun(
    step: dict[str, Any],
    prompts: dict[str, str],
    parent_step: dict[str, Any] | None,
    parent_prompts: dict[str, str],
    record: dict[str, Any] | None,
    known: _Known,
    *,
    overridden_config: bool,
) -> list[str]:
    reasons: list[str] = []
    if parent_step is None:
        reasons.append("not in the parent's definition")
    else:
        before, after = config_hash(parent_step, parent_prompts), config_hash(step, prompts)
        if before != after:
            by = "step_overrides" if overridden_config else "the definition"
            reasons.append(f"{by} changed it (config hash {before} → {after})")
    status = record.get("status") if record else "not run"
    if status == "skipped":
        reasons.append("skipped in the parent run; its `when` is evaluated again")
    elif status != "completed":
        reasons.append(f"no output recorded in the parent run ({status})")
    for raw, path in references(step, prompts):
        why = _changed_reference(raw, path, step["id"], known)
        if why and why not in reasons:
            reasons.append(why)
    return reasons


def _changed_reference(raw: str, path: list[Any], sid: str, known: _Known) -> str | None:
    if path[0] == "input":
        before, after = walk(known.parent_input, path[1:]), walk(known.new_input, path[1:])
        if (is_missing(before) and is_missing(after)) or before == after:
            return None  # the same value (or absent both times: null both times)
        return f"reads {raw}, which input_patch changed"
    if path[0] != "steps" or len(path) < 2 or not isinstance(path[1], str):
        return None
    target = known.holder.get(path[1], path[1])
    if target == sid:
        return None  # its own inner steps: they run with it
    if target in known.rerun:
        return f"reads {raw}; {target!r} runs again"
    if target in known.output_overrides:
        if path[1] != target:
            return f"reads {raw}, inside {target!r}, whose output output_overrides replaces"
        old = _view(known.parent_outputs.get(target))
        if _same(old, _view(known.output_overrides[target]), path[2:]):
            return None  # the override agrees with the parent at the path this step reads
        return f"reads {raw}, which output_overrides changed"
    return None


def _plan_items(
    plan: ForkPlan,
    step: dict[str, Any],
    record: dict[str, Any] | None,
    start: StartAt,
    reasons: list[str],
) -> None:
    """A fork from `foreach[k]…`: items before k keep the parent's outputs, unless the foreach
    itself must run again (then every item does)."""
    sid, k = step["id"], start.item or 0
    # A foreach that failed in the parent still kept its completed items (a redrive): only
    # an edit that reaches the foreach itself makes every item run again.
    edits = _edits(reasons)
    if edits:
        plan.set(sid, "rerun", "every item runs again: " + "; ".join(edits))
        return
    outputs = _item_outputs(step, record)
    if outputs is None:
        plan.set(
            sid,
            "rerun",
            "every item runs again: the parent's item outputs can't be told apart "
            "(on_item_error: drop)",
        )
        return
    kept = {str(i): out for i, out in outputs.items() if i < k}
    missing = [i for i in range(k) if i not in outputs]
    if missing:
        raise PlanError(
            "from_step",
            f"{sid} item(s) {', '.join(map(str, missing))} before {k} have no recorded output "
            "in the parent run; fork from an earlier item",
        )
    plan.reuse_items[sid] = kept
    kept_text = "item 0" if k == 1 else f"items 0-{k - 1}"
    plan.set(sid, "rerun", f"items from {k} run again; {kept_text} reused" if k else "from_step")


def _item_outputs(step: dict[str, Any], record: dict[str, Any] | None) -> dict[int, Any] | None:
    if record is None:
        return {}
    summary = record.get("summary") or {}
    if isinstance(summary.get("item_outputs"), dict):  # a failed foreach keeps them here
        return {int(i): out for i, out in summary["item_outputs"].items()}
    if (step.get("config") or {}).get("on_item_error") == "drop":
        return None
    output = record.get("output")
    if record.get("status") == "completed" and isinstance(output, list):
        return dict(enumerate(output))
    return {}
