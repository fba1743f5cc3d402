"""A workflow definition as a Mermaid `flowchart TD` (pure: no I/O).

Node ids are positional (`s0`, `s1`, …), never the step ids: a step may be called `end` or
`a-b`, which Mermaid would read as a keyword or an arrow. Every label is quoted and escaped.

Steps run in order; a step with `when` may be skipped, so each conditional step keeps the
nodes before it as possible predecessors of the next step. Those bypass edges are dashed and
say which steps they skip, so chained conditions stay exact. A control step is a node of its
own shape (hexagon: parallel/foreach, diamond: switch, circle: loop, flag: wait, trapezoids:
approval/wait_for_event, double circle: sub_workflow) followed by a
subgraph per block; a switch labels each case's edge, a loop draws its edge back.
"""

from __future__ import annotations

from typing import Any

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
    "parallel": ("{{", "}}"),  # hexagon: a fork
    "foreach": ("{{", "}}"),
    "switch": ("{", "}"),  # diamond: a decision
    "loop": ("((", "))"),  # circle: the loop's head
    "wait": (">", "]"),  # asymmetric flag: a pause
    "approval": ("[/", "\\]"),  # trapezoid: a person decides
    "wait_for_event": ("[\\", "/]"),  # inverted trapezoid: the outside world answers
    "sub_workflow": ("(((", ")))"),  # double circle: a whole workflow
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


class _Chart:
    """Accumulates node and edge lines; blocks are rendered recursively."""

    def __init__(self, defn: WorkflowDefinition) -> None:
        self.defn = defn
        self.nodes: list[str] = []
        self.edges: list[str] = []
        self.tolerant: list[str] = []

    def block(self, steps: list[Any], sources: Sources, prefix: str, indent: str) -> Sources:
        """Render `steps` after `sources`; returns what the next step can follow."""
        for index, step in enumerate(steps):
            node_id = f"{prefix}{index}"
            for source, skipped in sources:
                self.edges.append(_edge(source, node_id, skipped, step.when))
            exits = self.step(step, node_id, indent)
            if step.when is None:
                sources = exits
            else:
                sources = exits + [(src, [*skipped, step.id]) for src, skipped in sources]
        return sources

    def step(self, step: Any, node_id: str, indent: str) -> Sources:
        label = [f"{step.id} ({step.type})"]
        if step.display_name:
            label.append(step.display_name)
        mode = self.defn.step_error_mode(step)
        if mode != "fail":
            label.append(f"on error: {mode}")
            self.tolerant.append(node_id)
        if step.type == "foreach":
            label.append(f"each {_shorten(str(step.config.items))}")
        elif step.type == "wait":
            label.append(f"wait {step.config.seconds or step.config.until}")
        self.nodes.append(indent + _node(node_id, step.type, label).lstrip())
        blocks = step.blocks()
        if not blocks:
            return [(node_id, [])]
        exits: Sources = []
        for k, block in enumerate(blocks):
            sub = f"{node_id}_{k}"
            title = block.label or ("iteration" if step.type == "loop" else "each item")
            self.nodes.append(f'{indent}subgraph {sub}g["{escape_label(title)}"]')
            entry = self._entry_label(step, k)
            before = len(self.edges)
            block_exits = self.block(block.steps, [(node_id, [])], f"{sub}_", indent + "    ")
            if entry is not None:
                # Label the edge into the block with the case it takes.
                inner_when = block.steps[0].when
                text = entry + (f"; when: {_shorten(inner_when)}" if inner_when else "")
                self.edges[before] = f'    {node_id} -.->|"{escape_label(text)}"| {sub}_0'
            self.nodes.append(f"{indent}end")
            exits.extend(block_exits)
        if step.type == "loop":
            # Back to the loop node until the condition holds, then on from it.
            for source, _ in exits:
                self.edges.append(
                    f'    {source} -.->|"{escape_label("until " + _shorten(step.config.until))}"| {node_id}'
                )
            return [(node_id, [])]
        return exits

    def _entry_label(self, step: Any, k: int) -> str | None:
        if step.type != "switch":
            return None
        cases = step.config.cases
        return "when: " + _shorten(cases[k].when) if k < len(cases) else "default"


Sources = list[tuple[str, list[str]]]


def mermaid_flowchart(defn: WorkflowDefinition) -> str:
    chart = _Chart(defn)
    lines = ["flowchart TD", f"    %% {defn.name} {defn.version}"]
    lines.append(f'    {START}(("Start"))')
    exits = chart.block(defn.steps, [(START, [])], "s", "    ")
    for source, skipped in exits:
        chart.edges.append(_edge(source, END, skipped, None))
    lines.extend(chart.nodes)
    lines.append(f'    {END}(("End"))')
    lines.extend(chart.edges)
    if chart.tolerant:
        lines.append("    classDef tolerant stroke-dasharray: 5 5")
        lines.append(f"    class {','.join(chart.tolerant)} tolerant")
    return "\n".join(lines) + "\n"
