"""A workflow definition as a Mermaid `flowchart TD` (pure: no I/O).

Node ids are positional (`s0`, `s1`, …), never the step ids: a step may be called `end` or
`a-b`, which Mermaid would read as a keyword or an arrow. Every label is quoted and escaped.

Steps run in order; a step with `when` may be skipped, so each conditional step keeps the
nodes before it as possible predecessors of the next step. Those bypass edges are dashed and
say which steps they skip, so chained conditions stay exact.
"""

from __future__ import annotations

from workflow_defs.schema import WorkflowDefinition

START = "wf_start"
END = "wf_end"
MAX_CONDITION_CHARS = 80

# (open, close) around the quoted label, by step type.
SHAPES: dict[str, tuple[str, str]] = {
    "llm": ("([", "])"),  # stadium
    "external_api": ("[[", "]]"),  # subroutine
    "http": ("[/", "/]"),  # parallelogram
    "webhook": ("[\\", "\\]"),  # parallelogram leaning the other way
    "transform": ("[", "]"),  # rectangle
}
DEFAULT_SHAPE = ("[", "]")

# Mermaid entity codes (`#…;`). `#` itself first-class: a literal `#quot;` in the text must
# not turn into a quote. `<`/`>`/`&` would be HTML in labels; `|` ends an edge label; a
# backtick starts a Markdown string; `\n` (backslash n) is read as a line break.
_ESCAPES = {
    "#": "#35;",
    '"': "#quot;",
    "&": "#38;",
    "<": "#60;",
    ">": "#62;",
    "|": "#124;",
    "`": "#96;",
    "\\": "#92;",
}


def escape_label(text: str) -> str:
    """Text made safe inside a `"…"` Mermaid label: one line, entity-escaped."""
    one_line = " ".join(text.split())  # a newline would end the statement
    return "".join(_ESCAPES.get(ch, ch) for ch in one_line if ch.isprintable())


def _shorten(text: str, limit: int = MAX_CONDITION_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _node(node_id: str, step_type: str, lines: list[str]) -> str:
    opening, closing = SHAPES.get(step_type, DEFAULT_SHAPE)
    label = "<br/>".join(escape_label(line) for line in lines)
    return f'    {node_id}{opening}"{label}"{closing}'


def _edge(source: str, target: str, skipped: list[str], when: str | None) -> str:
    parts = []
    if skipped:
        parts.append("skip " + ", ".join(skipped))
    if when is not None:
        parts.append("when: " + _shorten(when))
    if not parts:
        return f"    {source} --> {target}"
    return f'    {source} -.->|"{escape_label("; ".join(parts))}"| {target}'


def mermaid_flowchart(defn: WorkflowDefinition) -> str:
    lines = ["flowchart TD", f"    %% {defn.name} {defn.version}"]
    lines.append(f'    {START}(("Start"))')
    tolerant: list[str] = []
    for index, step in enumerate(defn.steps):
        node_id = f"s{index}"
        label = [f"{step.id} ({step.type})"]
        if step.display_name:
            label.append(step.display_name)
        mode = defn.step_error_mode(step)
        if mode != "fail":
            label.append(f"on error: {mode}")
            tolerant.append(node_id)
        lines.append(_node(node_id, step.type, label))
    lines.append(f'    {END}(("End"))')

    # Each entry: a node the next step can follow, and the steps skipped since that node.
    sources: list[tuple[str, list[str]]] = [(START, [])]
    for index, step in enumerate(defn.steps):
        node_id = f"s{index}"
        for source, skipped in sources:
            lines.append(_edge(source, node_id, skipped, step.when))
        if step.when is None:
            sources = [(node_id, [])]
        else:
            sources = [(node_id, [])] + [(src, [*skipped, step.id]) for src, skipped in sources]
    for source, skipped in sources:
        lines.append(_edge(source, END, skipped, None))

    if tolerant:
        lines.append("    classDef tolerant stroke-dasharray: 5 5")
        lines.append(f"    class {','.join(tolerant)} tolerant")
    return "\n".join(lines) + "\n"
