"""`llmflow dev` (what `make dev` runs): the whole stack up on the ports it was given and no
others, a job through it, a second `llmflow dev` refused in one line, and Ctrl-C stops every
process it started (gateway and worker first, Temporal last) without a page of warnings."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def descendants(pid: int) -> set[int]:
    """Every live process whose ancestry includes `pid` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents[int(entry)] = ppid
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {p for p, pp in parents.items() if pp in frontier and p not in found}
        found |= children
        frontier = children
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def listening(pids: set[int]) -> dict[tuple[str, int], int]:
    """{(address, port): pid} of the TCP sockets in LISTEN held by the given processes."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if match := re.fullmatch(r"socket:\[(\d+)\]", link):
                inodes[match.group(1)] = pid
    found: dict[tuple[str, int], int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            if len(address) == 8:  # IPv4, little-endian hex
                ip = ".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0))
            else:
                ip = f"[{address}]"
            found[(ip, int(port, 16))] = inodes[fields[9]]
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def dev_env(tmp_path: Path, **ports: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(
        {
            "LLMFLOW_STATE_DIR": str(tmp_path / "state"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'mirror.db'}",
            "ENVIRONMENT": "development",
            "LOG_LEVEL": "WARNING",
            "PORT": str(ports["api"]),
            "TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",
            "TEMPORAL_UI_PORT": str(ports["ui"]),
            "TEMPORAL_HTTP_PORT": str(ports["http"]),
            "TEMPORAL_METRICS_PORT": str(ports["metrics"]),
        }
    )
    env.pop("LLM_DEFAULT_PROVIDER", None)
    env.pop("NO_COLOR", None)
    return env


ANSI = re.compile(r"\x1b\[")


def test_llmflow_dev_runs_the_stack_and_ctrl_c_stops_all_of_it(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("api", "temporal", "ui", "http", "metrics", "worker")}
    env = dev_env(tmp_path, **ports)
    env["WORKER_METRICS_PORT"] = str(ports["worker"])
    # Slow enough that the second job's LLM activity is still running at Ctrl-C.
    env["LLM_MOCK_LATENCY_MS"] = "5000"
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "dev"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    started: set[int] = set()
    try:
        base = f"http://127.0.0.1:{ports['api']}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else "dev exited"
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the stack did not come up"
            time.sleep(0.5)
        started = descendants(proc.pid)
        assert len(started) >= 3  # dev server, worker, gateway (and their children)

        def submit() -> str:
            job = httpx.post(
                base + "/api/v1/jobs",
                content=json.dumps(
                    {"workflow_name": "quickstart", "input_data": {"topic": "durable execution"}}
                ),
                timeout=10,
            )  # no Content-Type, like the README's curl
            assert job.status_code == 202, job.text
            return str(job.json()["job_id"])

        job_id = submit()
        deadline = time.monotonic() + 60
        while True:
            body = httpx.get(f"{base}/api/v1/jobs/{job_id}", timeout=5).json()
            if body["status"] not in ("queued", "running") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert body["status"] == "completed" and body["output"]["provider"] == "mock"
        assert (tmp_path / "state" / "temporal.db").exists()

        # Every port the stack listens on is one it was given, on loopback; the dev server's
        # internal services (history, matching, worker) are the only others, on loopback too.
        sockets = listening(descendants(proc.pid))
        assert {ip for ip, _ in sockets} == {"127.0.0.1"}, sockets
        by_port = {port: pid for (_, port), pid in sockets.items()}
        assert set(ports.values()) <= set(by_port), (ports, sockets)
        assert "core.cli api" in cmdline(by_port[ports["api"]])
        assert "core.cli worker" in cmdline(by_port[ports["worker"]])
        temporal_pid = by_port[ports["temporal"]]
        assert "start-dev" in cmdline(temporal_pid)
        for name in ("ui", "http", "metrics"):
            assert by_port[ports[name]] == temporal_pid, name
        extra = {port: pid for port, pid in by_port.items() if port not in ports.values()}
        assert set(extra.values()) <= {temporal_pid}, {p: cmdline(pid) for p, pid in extra.items()}
        metrics = httpx.get(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=5)
        assert metrics.status_code == 200
        namespaces = httpx.get(
            f"http://127.0.0.1:{ports['http']}/api/v1/namespaces/default", timeout=5
        )
        assert namespaces.status_code == 200, namespaces.text
        worker_metrics = httpx.get(f"http://127.0.0.1:{ports['worker']}/metrics", timeout=5)
        assert worker_metrics.status_code == 200

        # A second `llmflow dev` with the same settings: one line naming what is taken, exit 2,
        # and the first stack is untouched.
        second = subprocess.run(
            [sys.executable, "-m", "core.cli", "dev"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2, second
        lines = (second.stdout + second.stderr).strip().splitlines()
        assert len(lines) == 1, lines
        for port, variable in [
            (ports["api"], "PORT"),
            (ports["temporal"], "TEMPORAL_ADDRESS"),
            (ports["ui"], "TEMPORAL_UI_PORT"),
            (ports["worker"], "WORKER_METRICS_PORT"),
        ]:
            assert f"port {port} " in lines[0] and f"set {variable}" in lines[0], lines[0]
        assert "LLMFLOW_STATE_DIR" in lines[0]
        assert httpx.get(base + "/health", timeout=5).status_code == 200

        # Ctrl-C with an activity in flight.
        in_flight = submit()
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/api/v1/jobs/{in_flight}", timeout=5).json()["status"] != "running":
            assert time.monotonic() < deadline, "the second job did not start"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "mock" in out and f"http://127.0.0.1:{ports['api']}/docs" in out
    # The banner tells other terminals where this stack is (the ports are not the defaults).
    assert f"export TEMPORAL_ADDRESS=127.0.0.1:{ports['temporal']}" in out
    assert f"export DATABASE_URL=sqlite:///{tmp_path / 'mirror.db'}" in out
    assert proc.returncode == 0
    leftovers = [pid for pid in started if alive(pid)]
    assert leftovers == [], f"orphans left running: {leftovers}"
    # Stopping is quiet: no colour codes on a pipe, no warnings from processes that lost Temporal.
    assert not ANSI.search(out), out
    stopping = out.split("llmflow dev: stopping", 1)[1]
    assert "WARN" not in stopping.upper(), stopping
    assert "still running activities" in stopping


def test_a_port_in_use_is_named_before_anything_starts(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("api", "temporal", "ui", "http", "metrics")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["temporal"]))
        taken.listen()
        proc = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "dev"],
            cwd=REPO,
            env=dev_env(tmp_path, **ports),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 2, (out, err)
    assert out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("llmflow dev: ")
    assert f"port {ports['temporal']} (Temporal gRPC) is in use: set TEMPORAL_ADDRESS" in line
    for name in ("api", "ui", "http", "metrics"):
        assert str(ports[name]) not in line  # only what is taken
    assert not (tmp_path / "state" / "temporal.db").exists()  # nothing was started


def test_two_settings_on_one_port_are_refused(tmp_path: Path) -> None:
    port = free_port()
    env = dev_env(tmp_path, api=port, temporal=free_port(), ui=port, http=free_port(), metrics=0)
    env.pop("TEMPORAL_METRICS_PORT")
    done = subprocess.run(
        [sys.executable, "-m", "core.cli", "dev"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert f"port {port} is both PORT and TEMPORAL_UI_PORT" in line
