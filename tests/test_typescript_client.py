"""clients/typescript: schema.d.ts is what openapi-typescript makes of the committed OpenAPI
document, client.ts and example.ts type-check, and the compiled client works: it verifies
the signatures the worker sends and submits and waits for a job on the real gateway.

Needs npm (the dev tools come from the committed package-lock.json by `npm ci`, re-run only
when the lock changes); skipped when npm is not on PATH.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import Client

from core.settings import Settings
from core.webhook_signing import build_webhook_headers, encode_body
from tests import harness
from tests.api_server import gateway

ROOT = Path(__file__).resolve().parents[1]
TS = ROOT / "clients" / "typescript"
NODE_MODULES = TS / "node_modules"

pytestmark = pytest.mark.skipif(
    shutil.which("npm") is None or shutil.which("node") is None,
    reason="npm/node not on PATH: the TypeScript client can't be regenerated or type-checked",
)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """`npm ci` through clients/typescript/install.py (cached by the lock's hash)."""
    spec = importlib.util.spec_from_file_location("llmflow_ts_install", TS / "install.py")
    assert spec is not None and spec.loader is not None
    install = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(install)
    assert install.ensure(), "npm disappeared"
    return NODE_MODULES


def node(*args: str, cwd: Path = TS, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    node_bin = shutil.which("node")
    assert node_bin is not None
    return subprocess.run(
        [node_bin, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_schema_types_are_generated_from_the_committed_openapi(
    node_modules: Path, tmp_path: Path
) -> None:
    fresh = tmp_path / "schema.d.ts"
    run = node(
        str(node_modules / "openapi-typescript" / "bin" / "cli.js"),
        str(ROOT / "clients" / "openapi.json"),
        "--output",
        str(fresh),
    )
    assert run.returncode == 0, run.stderr + run.stdout
    committed = (TS / "schema.d.ts").read_text(encoding="utf-8")
    assert fresh.read_text(encoding="utf-8") == committed, (
        "clients/typescript/schema.d.ts is stale: run `make openapi` to regenerate it"
    )


@pytest.fixture(scope="module")
def compiled(node_modules: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tsc over client.ts + example.ts (tsconfig.json, strict): the type check, emitting JS
    into a temp dir so the tests below can run it."""
    out = tmp_path_factory.mktemp("ts-out")
    run = node(
        str(node_modules / "typescript" / "bin" / "tsc"),
        "-p",
        "tsconfig.json",
        "--noEmit",
        "false",
        "--outDir",
        str(out),
    )
    assert run.returncode == 0, "tsc found errors:\n" + run.stdout + run.stderr
    (out / "package.json").write_text('{"type": "module"}')
    return out


def test_client_and_example_type_check(compiled: Path) -> None:
    assert (compiled / "client.js").exists() and (compiled / "example.js").exists()


VERIFY = """
import { verifyWebhookSignature } from "./client.js";
const cases = JSON.parse(process.argv[2]);
const out = [];
for (const c of cases) {
  out.push(await verifyWebhookSignature(c.secret, c.body, c.headers, { now: c.now }));
}
console.log(JSON.stringify(out));
"""


def signed(secret: str, payload: Any, timestamp: int) -> tuple[str, dict[str, str]]:
    body = encode_body(payload)
    headers = build_webhook_headers(
        secret=secret,
        body=body,
        event="workflow.completed",
        delivery_id="whd_1",
        timestamp=timestamp,
    )
    return body.decode(), headers


def test_verify_webhook_signature_accepts_what_the_worker_signs(compiled: Path) -> None:
    now = 1_760_000_000
    payload = {"event": "workflow.completed", "job_id": "j1", "output": {"text": "naïve ✓"}}
    plain_body, plain = signed("plain-secret", payload, now)
    whsec = "whsec_" + "c2VjcmV0LWtleS1vZi10aGlzLWFwcA=="
    whsec_body, standard = signed(whsec, payload, now)
    hex_only = {k: v for k, v in plain.items() if not k.startswith("webhook-")}
    lower = {k.lower(): v for k, v in plain.items()}
    cases = [
        ("plain secret, both signatures", "plain-secret", plain_body, plain, now, True),
        ("whsec_ secret", whsec, whsec_body, standard, now, True),
        ("only X-Webhook-Signature", "plain-secret", plain_body, hex_only, now, True),
        ("lower-case header names", "plain-secret", plain_body, lower, now, True),
        ("a changed body", "plain-secret", plain_body.replace("j1", "j2"), plain, now, False),
        ("another secret", "other-secret", plain_body, plain, now, False),
        ("an old timestamp (replay)", "plain-secret", plain_body, plain, now + 301, False),
        ("a changed hex body", "plain-secret", plain_body + " ", hex_only, now, False),
        ("no signature", "plain-secret", plain_body, {"webhook-id": "whd_1"}, now, False),
        ("empty secret", "", plain_body, plain, now, False),
    ]
    (compiled / "verify.mjs").write_text(VERIFY)
    arg = [{"secret": s, "body": b, "headers": h, "now": n} for _, s, b, h, n, _ in cases]
    run = node("verify.mjs", json.dumps(arg), cwd=compiled)
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    assert {name: got for (name, *_), got in zip(cases, results, strict=True)} == {
        name: expected for name, *_, expected in cases
    }


CLIENT = """
import { submitJob, getJob, waitForJob, LlmflowError } from "./client.js";
const config = { baseUrl: process.argv[2], apiKey: process.argv[3] };
const accepted = await submitJob(config, { workflow_name: "quickstart", input_data: { topic: "ts" } });
const job = await waitForJob(config, accepted.job_id, { timeoutMs: 60000, intervalMs: 100 });
const errors = {};
for (const [name, call] of [
  ["missing", () => getJob(config, "no-such-job")],
  ["invalid", () => submitJob(config, { workflow_name: "quickstart", input_data: {} })],
  ["unauthorised", () => getJob({ ...config, apiKey: "wrong" }, accepted.job_id)],
]) {
  try {
    await call();
  } catch (err) {
    if (!(err instanceof LlmflowError)) throw err;
    errors[name] = { status: err.status, error: err.error, fields: err.fields };
  }
}
console.log(JSON.stringify({ accepted, job, errors }));
"""


async def test_submit_and_wait_from_node_against_the_real_gateway(
    compiled: Path, temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    ts_settings = settings.model_copy(
        update={"api_keys": ["web:ts-key-0123456789"], "llm_default_provider": "mock"}
    )
    (compiled / "submit.mjs").write_text(CLIENT)
    node_bin = shutil.which("node")
    assert node_bin is not None
    async with harness.running_worker(temporal_client, ts_settings, engine):
        async with gateway(ts_settings, engine=engine, temporal_client=temporal_client) as api:
            proc = await asyncio.create_subprocess_exec(
                node_bin,
                "submit.mjs",
                str(api.base_url).rstrip("/"),
                "ts-key-0123456789",
                cwd=compiled,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, stderr.decode()
    result = json.loads(stdout)
    assert result["accepted"]["status"] == "queued"
    assert result["job"]["status"] == "completed" and result["job"]["output"]["summary"]
    assert result["errors"]["missing"] == {"status": 404, "error": "JobNotFound", "fields": []}
    assert result["errors"]["invalid"]["status"] == 422
    assert ["body", "input_data", "topic"] in result["errors"]["invalid"]["fields"]
    assert result["errors"]["unauthorised"]["error"] == "InvalidAPISecret"
