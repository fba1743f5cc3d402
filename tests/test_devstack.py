"""`llmflow dev` (what `make dev` runs): the whole stack up, a job through it, and Ctrl-C stops
every process it started."""

from __future__ import annotations

import json
import os
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


def test_llmflow_dev_runs_the_stack_and_ctrl_c_stops_all_of_it(tmp_path: Path) -> None:
    api_port, temporal_port, ui_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(
        {
            "PORT": str(api_port),
            "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
            "TEMPORAL_UI_PORT": str(ui_port),
            "LLMFLOW_STATE_DIR": str(tmp_path / "state"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'mirror.db'}",
            "ENVIRONMENT": "development",
            "LOG_LEVEL": "WARNING",
        }
    )
    env.pop("LLM_DEFAULT_PROVIDER", None)
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
        base = f"http://127.0.0.1:{api_port}"
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

        job = httpx.post(
            base + "/api/v1/jobs",
            content=json.dumps(
                {"workflow_name": "quickstart", "input_data": {"topic": "durable execution"}}
            ),
            timeout=10,
        )  # no Content-Type, like the README's curl
        assert job.status_code == 202, job.text
        job_id = job.json()["job_id"]
        for _ in range(100):
            body = httpx.get(f"{base}/api/v1/jobs/{job_id}", timeout=5).json()
            if body["status"] == "completed":
                break
            time.sleep(0.2)
        assert body["status"] == "completed" and body["output"]["provider"] == "mock"
        assert (tmp_path / "state" / "temporal.db").exists()

        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "mock" in out and f"http://127.0.0.1:{api_port}/docs" in out
    assert proc.returncode == 0
    leftovers = [pid for pid in started if alive(pid)]
    assert leftovers == [], f"orphans left running: {leftovers}"
