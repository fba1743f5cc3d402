"""How the `llmflow` command shows jobs in a terminal: a line per step as it starts and ends,
step tables, job lists. Colour and styles only on a TTY (rich turns them off otherwise), so
pipes and CI logs read plain."""

from __future__ import annotations

import json
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.contracts import TERMINAL_STATUSES

MARKS = {
    "running": ("▸", "cyan"),
    "completed": ("✓", "green"),
    "failed": ("✗", "red"),
    "cancelled": ("■", "yellow"),
    "skipped": ("·", "dim"),
    "timed_out": ("✗", "red"),
}


# Piped output has no terminal width; wide enough that ids and paths never wrap in a table.
PIPE_WIDTH = 240


def console(out: IO[str]) -> Console:
    # highlight off: rich would colour numbers and paths inside plain messages.
    tty = hasattr(out, "isatty") and out.isatty()
    return Console(file=out, highlight=False, soft_wrap=True, width=None if tty else PIPE_WIDTH)


def figures(view: dict[str, Any]) -> str:
    """`1 attempt · 320 ms · 45 tokens · $0.000120`, with what the step has."""
    parts: list[str] = []
    attempts = view.get("attempts")
    if attempts:
        parts.append(f"{attempts} attempt{'s' if attempts != 1 else ''}")
    if view.get("duration_ms") is not None:
        parts.append(f"{view['duration_ms']:,} ms")
    if view.get("tokens"):
        parts.append(f"{view['tokens']:,} tokens")
    if view.get("cost_usd"):
        parts.append(f"${view['cost_usd']:.6f}")
    return " · ".join(parts)


def step_line(path: str, status: str, view: dict[str, Any] | None = None) -> str:
    mark, colour = MARKS.get(status, ("?", "white"))
    text = f"[{colour}]{mark}[/] {escape(path)} [{colour}]{status}[/]"
    view = view or {}
    if status not in ("running", "skipped") and (numbers := figures(view)):
        text += f" [dim]· {numbers}[/]"
    error = view.get("error")
    if isinstance(error, dict) and error.get("message"):
        text += f"\n    [red]{escape(str(error.get('type')))}[/]: {escape(str(error['message']))}"
    return text


class StepLines:
    """Prints each step once when it starts and once when it ends, from successive views of
    `{path: status}` and the finished steps' figures."""

    def __init__(self, con: Console, stream: Any = None) -> None:
        self.con = con
        self.said: dict[str, str] = {}
        # The DeltaPrinter writing streamed text to the same terminal, if any: a step line
        # never lands inside a step's streamed text.
        self.stream = stream

    def _print(self, path: str, status: str, view: dict[str, Any] | None = None) -> None:
        open_block = getattr(self.stream, "current", None)
        if open_block is not None:
            if status == "running" and open_block[0] == path:
                return  # its streamed text already says it runs
            self.stream.close()
        self.con.print(step_line(path, status, view))

    def update(self, statuses: dict[str, str], finished: dict[str, dict[str, Any]]) -> None:
        for path, status in statuses.items():
            before = self.said.get(path, "pending")
            if status == before or status == "pending":
                continue
            if before == "pending" and status != "skipped":
                self._print(path, "running")
            if status != "running":
                self._print(path, status, finished.get(path))
            self.said[path] = status

    def records(self, records: list[dict[str, Any]]) -> None:
        """The job's final records: say what the last views missed."""
        statuses = {_path(r): r["status"] for r in records}
        self.update(statuses, {_path(r): r for r in records})


def _path(record: dict[str, Any]) -> str:
    return str(record.get("path") or record["id"])


def output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    return json.dumps(output, indent=2, ensure_ascii=False, default=str)


def steps_table(records: list[dict[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name, justify in (
        ("step", "left"),
        ("status", "left"),
        ("attempts", "right"),
        ("duration", "right"),
        ("tokens", "right"),
        ("cost", "right"),
        ("error", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in records:
        error = r.get("error") or {}
        colour = MARKS.get(r["status"], ("", "white"))[1]
        table.add_row(
            escape(_path(r)),
            f"[{colour}]{r['status']}[/]",
            str(r.get("attempts") or ""),
            f"{r['duration_ms']:,} ms" if r.get("duration_ms") is not None else "",
            f"{r['tokens']:,}" if r.get("tokens") else "",
            f"${r['cost_usd']:.6f}" if r.get("cost_usd") else "",
            escape(str(error.get("message") or "")),
        )
    return table


def job_summary(row: Any, ui_url: str) -> list[str]:
    meta = row.job_metadata or {}
    lines = [
        f"[bold]{escape(row.job_id)}[/]  {escape(row.workflow_name)} {escape(row.workflow_version)}"
        f"  [{MARKS.get(row.status, ('', 'white'))[1]}]{row.status}[/]",
        f"Web UI: {ui_url}",
    ]
    if meta.get("duration_ms") is not None:
        total = f"took {meta['duration_ms']:,} ms"
        if meta.get("total_tokens"):
            total += f" · {meta['total_tokens']:,} tokens · ${meta.get('total_cost_usd') or 0:.6f}"
        lines.append(total)
    if row.status in TERMINAL_STATUSES and row.error:
        lines.append(
            f"[red]{escape(str(row.error.get('type')))}[/]: {escape(str(row.error.get('message')))}"
        )
    return lines


def jobs_table(rows: list[Any], as_utc: Any) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("job id", "status", "workflow", "created (UTC)", "error"):
        table.add_column(name, no_wrap=name != "error")
    for r in rows:
        colour = MARKS.get(r.status, ("", "white"))[1]
        created = as_utc(r.created_at)
        table.add_row(
            escape(r.job_id),
            f"[{colour}]{r.status}[/]",
            escape(f"{r.workflow_name} {r.workflow_version}"),
            f"{created:%Y-%m-%d %H:%M:%S}" if created else "",
            escape(str((r.error or {}).get("type", ""))),
        )
    return table
