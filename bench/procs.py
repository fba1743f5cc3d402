"""The processes of a benchmark, each on its own as deployed: the gateway (`llmflow api`), a worker
(`llmflow worker`, or a bench module's own), and a scratch database for the mirror.

Every child reads its configuration from the environment only, built from a `Settings` (it runs
in a scratch directory, so no `.env` changes what is measured), writes its output to a log
file, and is stopped with SIGTERM (SIGKILL after a grace period) when its context ends. CPU per
process is read from /proc, so a benchmark can say which process spent what.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from core.db import normalize_url
from core.settings import Settings

REPO = Path(__file__).resolve().parents[1]
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process, all its threads (0.0 once it is gone)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()  # utime and stime are fields 14 and 15
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment a child process reads `settings` back from (and nothing else of ours)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
    }
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list):
            value = ",".join(value)
        elif isinstance(value, dict):  # name:value pairs (API_KEY_BUDGETS)
            value = ",".join(f"{k}:{v}" for k, v in value.items())
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[name.upper()] = str(value)
    return env


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def check(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with {code}:\n{self.tail()}")


def _start(name: str, argv: Sequence[str], env: dict[str, str], workdir: Path) -> Proc:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            list(argv), env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT
        )
    return Proc(name, popen, log)


@contextlib.asynccontextmanager
async def spawn(
    name: str, argv: Sequence[str], env: dict[str, str], workdir: Path, *, grace_s: float = 15
) -> AsyncIterator[Proc]:
    proc = _start(name, argv, env, workdir)
    popen = proc.popen
    try:
        yield proc
    except BaseException:
        # The scratch directory goes away with the run: show what the process said.
        print(f"\n--- last lines of {name} (pid {proc.pid}) ---\n{proc.tail(40)}", flush=True)
        raise
    finally:
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(popen.wait, grace_s)
            except subprocess.TimeoutExpired:
                popen.kill()
                await asyncio.to_thread(popen.wait)


@contextlib.asynccontextmanager
async def gateway_process(
    settings: Settings, workdir: Path, *, ready_within_s: float = 60
) -> AsyncIterator[tuple[str, Proc]]:
    """`llmflow api` as deployed (its own uvicorn options), on a free port: (base URL, process)."""
    port = free_port()
    argv = [sys.executable, "-m", "core.cli", "api", "--host", "127.0.0.1", "--port", str(port)]
    async with spawn("gateway", argv, settings_env(settings), workdir) as proc:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + ready_within_s
        async with httpx.AsyncClient(base_url=url, timeout=5) as probe:
            while True:
                proc.check()
                try:
                    await probe.get("/health")  # any answer: it is listening
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"gateway not up in {ready_within_s} s") from None
                    await asyncio.sleep(0.1)
        yield url, proc


@contextlib.asynccontextmanager
async def worker_process(
    settings: Settings, workdir: Path, *, module: str | None = None, name: str = "worker"
) -> AsyncIterator[Proc]:
    """`llmflow worker` as deployed, or `python -m <module>` (a bench worker of its own)."""
    argv = [sys.executable, "-m", *(("core.cli", "worker") if module is None else (module,))]
    async with spawn(name, argv, settings_env(settings), workdir) as proc:
        yield proc


@contextlib.asynccontextmanager
async def scratch_database(url: str | None, tmp: Path, name: str) -> AsyncIterator[str]:
    """A new, empty mirror database: on the Postgres server `url` names (dropped afterwards),
    else a SQLite file. Rows of earlier runs (or of the test suite) never load a benchmark."""
    if not url or not normalize_url(url).startswith("postgresql"):
        yield f"sqlite:///{tmp / f'{name}.db'}"
        return
    admin = create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")
    database = f"llmflow_bench_{name}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        yield admin.url.set(database=database).render_as_string(hide_password=False)
    finally:
        with contextlib.suppress(Exception), admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
