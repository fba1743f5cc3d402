"""Walking a definition's step tree: the one place that knows how blocks nest and what each
step may reference.

Scoping (the same at load time and run time): a step sees the steps that finished before its
block started, the earlier steps of its own block, and its block's variables (a foreach's
`item`/`index`). After a block, its inner steps are data of the control step
(`${steps.enrich.output[0]}`), except a parallel's: the top-level steps of each branch stay
referable by id once the parallel is done.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Located:
    step: Any
    json_path: str  # "$.steps[2].config.branches.weather[0]"
    visible: frozenset[str]  # step ids it may reference
    variables: frozenset[str]  # extra reference roots (a foreach's item/index names)
    parent: str | None  # id of the control step whose block holds it
    block: Any = None  # the BlockSpec it is in (None at the top level)


def exported_ids(step: Any) -> set[str]:
    """Ids referable after `step` finished, besides its own."""
    if step.type != "parallel":
        return set()
    return {inner.id for block in step.blocks() for inner in block.steps}


def walk_steps(
    steps: list[Any],
    *,
    json_base: str = "$.steps",
    visible: frozenset[str] = frozenset(),
    variables: frozenset[str] = frozenset(),
    parent: str | None = None,
    block: Any = None,
) -> Iterator[Located]:
    """Every step of the tree, depth first in definition order."""
    seen = set(visible)
    for index, step in enumerate(steps):
        path = f"{json_base}[{index}]"
        yield Located(step, path, frozenset(seen), variables, parent, block)
        for inner in step.blocks():
            yield from walk_steps(
                inner.steps,
                json_base=f"{path}.{inner.key}",
                visible=frozenset(seen),
                variables=variables | frozenset(inner.variables),
                parent=step.id,
                block=inner,
            )
        seen.add(step.id)
        seen |= exported_ids(step)


def all_steps(steps: list[Any]) -> list[Any]:
    return [located.step for located in walk_steps(steps)]


def block_ids(step: Any) -> set[str]:
    """Ids of the top-level steps of every block of `step`."""
    return {inner.id for block in step.blocks() for inner in block.steps}


def streamed_ids(steps: list[Any]) -> frozenset[str]:
    """Ids of the llm steps that stream their reply (`stream: true`)."""
    return frozenset(
        s.id for s in all_steps(steps) if s.type == "llm" and getattr(s.config, "stream", False)
    )
