"""The `template` transform: `${name}` / `${name.path[0]}` placeholders filled in one pass.

Variables come from `config.variables`, on top of the data's own keys when the data is an
object (with no step input, that is the run namespace, so `${input.city}` works too); `${item}`
is the data itself unless a variable of that name exists.

A list input renders one string per element: the element's keys are variables, `${item}` is
the whole element and `${index}` its 0-based position; `config.variables` stay visible
underneath (the element's keys win).

Rendering: strings as is, numbers as text, booleans `true`/`false`, objects and lists as
single-line JSON. A placeholder whose path is absent, or whose value is null, renders as empty
text (DESIGN §3.3: absent data is empty text inside a longer string). A placeholder that is not
a valid path (`${not a path}`) is left as written.

Substitution is a single pass: text that arrives through a variable is never scanned again, so
`${x}` or `{{include:…}}` inside data stays literal. Includes are resolved when prompt files
load, never here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from workflow_defs.transforms.paths import PathSyntaxError, get_path, parse_path
from workflow_defs.transforms.spec import OperationSpec, Problem, deferred
from workflow_defs.transforms.values import to_text

PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")


def render(template: str, variables: Mapping[str, Any]) -> str:
    def substitute(m: re.Match[str]) -> str:
        path = m.group(1).strip()
        if not path or any(ch.isspace() for ch in path):
            return m.group(0)
        try:
            segments = parse_path(path)
        except PathSyntaxError:
            return m.group(0)
        return to_text(get_path(variables, segments))

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
    if isinstance(data, list):
        rendered = []
        for index, element in enumerate(data):
            scope: dict[str, Any] = {"index": index, **variables}
            if isinstance(element, Mapping):
                scope.update(element)
            scope["item"] = element
            rendered.append(render(template, scope))
        return rendered
    scope = {}
    if data is not None:
        scope["item"] = data
    if isinstance(data, Mapping):
        scope.update(data)
    scope.update(variables)
    return render(template, scope)


SPECS = [
    OperationSpec(
        "template",
        _template,
        {"template": ("string",), "variables": ("object",)},
        required=(("template",),),
        check=_check_template,
    ),
]
