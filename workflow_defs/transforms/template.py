"""The `template` transform: `${name}` / `${name.path[0]}` placeholders filled in one pass.

Variables come from `config.variables`, on top of the data's own keys when the data is an
object (with no step input, that is the run namespace, so `${input.city}` works too); `${item}`
is the data itself unless a variable of that name exists.

A list input renders one string per element: the element's keys are variables, `${item}` is
the whole element and `${index}` its 0-based position; `config.variables` stay visible
underneath (the element's keys win).

Rendering: strings as is, numbers as text, booleans `true`/`false`, objects and lists as
single-line JSON. A placeholder whose path is absent, or whose value is null, renders as empty
text (absent data is empty text inside a longer string). A placeholder that is not a valid path
(`${not a path}`) is left as written.

A list input is capped like any transform input (limits.MAX_INPUT_BYTES), and the rendered
text, all elements together, at limits.MAX_OUTPUT_BYTES: one template repeating a large value
over many elements fails the step instead of building gigabytes.

Substitution is a single pass: text that arrives through a variable is never scanned again, so
`${x}` or `{{include:…}}` inside data stays literal. Includes are resolved when prompt files
load, never here.
"""

from __future__ import annotations

import re
from collections import ChainMap
from collections.abc import Mapping
from typing import Any, cast

from workflow_defs.transforms.limits import OutputBudget, check_data
from workflow_defs.transforms.paths import PathSyntaxError, get_path, parse_path
from workflow_defs.transforms.spec import OperationSpec, Problem, deferred
from workflow_defs.transforms.values import to_text

PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")


def render(template: str, variables: Mapping[str, Any], budget: OutputBudget | None = None) -> str:
    budget = budget or OutputBudget("template")

    def substitute(m: re.Match[str]) -> str:
        path = m.group(1).strip()
        if not path or any(ch.isspace() for ch in path):
            return budget.spend(m.group(0))
        try:
            segments = parse_path(path)
        except PathSyntaxError:
            return budget.spend(m.group(0))
        return budget.spend(to_text(get_path(variables, segments)))

    # The literal text between placeholders counts too: spend the template once up front.
    budget.spend(PLACEHOLDER.sub("", template))
    return PLACEHOLDER.sub(substitute, template)


def _check_template(config: Mapping[str, Any], at_load: bool) -> list[Problem]:
    variables = config.get("variables")
    if isinstance(variables, Mapping) and not deferred(variables, at_load):
        bad = [name for name in variables if not isinstance(name, str) or not name.strip()]
        if bad:
            return [("config.variables", f"variable names must be non-empty strings (got {bad!r})")]
    return []


def _template(data: Any, config: Mapping[str, Any]) -> Any:
    template: str = config["template"]
    variables: Mapping[str, Any] = config.get("variables") or {}
    budget = OutputBudget("template")
    if isinstance(data, list):
        check_data("template", data)
        rendered = []
        for index, element in enumerate(data):
            # A view, not a copy: copying `variables` per element is quadratic when both are
            # large. Same lookups and key order as {"index", **variables, **element, "item"}.
            own = element if isinstance(element, Mapping) else {}
            scope = ChainMap[str, Any](
                {"item": element}, cast(Any, own), cast(Any, variables), {"index": index}
            )
            rendered.append(render(template, scope, budget))
        return rendered
    merged: dict[str, Any] = {}
    if data is not None:
        merged["item"] = data
    if isinstance(data, Mapping):
        merged.update(data)
    merged.update(variables)
    return render(template, merged, budget)


SPECS = [
    OperationSpec(
        "template",
        _template,
        {"template": ("string",), "variables": ("object",)},
        required=(("template",),),
        check=_check_template,
    ),
]
