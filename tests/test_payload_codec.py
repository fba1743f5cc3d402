"""Payload encryption (core/payload_codec.py) and the gateway's codec server (/codec).

With LLMFLOW_PAYLOAD_KEY set, the raw history Temporal keeps holds no input in clear text,
while the job runs as before and /codec/decode opens it for the Web UI; old keys still open
what they sealed; altered payloads fail loudly; replay works on encrypted histories.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import uuid
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from sqlalchemy.engine import Engine
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from core.cli import devstack
from core.payload_codec import (
    COMPRESS_OVER,
    ENCODING,
    META_COMPRESSION,
    META_KEY_ID,
    PayloadDecodeError,
    PayloadKeyError,
    check_payload_key_config,
    data_converter,
    derived_key_id,
    payload_codec,
)
from core.settings import Settings
from tests import harness
from tests.api_server import gateway
from tests.conftest import TEMPORAL_BIN
from tests.fakes.http_server import FakeHTTPServer
from tests.fakes.llm_wire import openai_chat
from tests.test_replay_cli import SleepsAtTheEnd, replay_cli
from worker.replay import replay

CHAT = "/openrouter/api/v1/chat/completions"
KEY_A = base64.b64encode(os.urandom(32)).decode()
KEY_B = base64.b64encode(os.urandom(32)).decode()
OPS_SECRET = "ops-secret-0123456789"
OPS_KEY = f"ops:{OPS_SECRET}"


def keyed(settings: Settings, **values: Any) -> Settings:
    return Settings(**{**settings.model_dump(), **values})


def with_converter(client: Client, settings: Settings) -> Client:
    """A client on the same connection with the data converter `settings` ask for."""
    config = client.config()
    config["data_converter"] = data_converter(settings)
    return Client(**config)


def json_payload(value: Any) -> Payload:
    return pydantic_data_converter.payload_converter.to_payload(value)


def wire(payloads: list[Payload]) -> dict[str, Any]:
    """The codec server protocol's body: Payloads as protobuf JSON, as the Web UI sends it."""
    return json_format.MessageToDict(Payloads(payloads=payloads))


def from_wire(body: dict[str, Any]) -> list[Payload]:
    return list(json_format.ParseDict(body, Payloads()).payloads)


async def seal(settings: Settings, payload: Payload) -> Payload:
    codec = payload_codec(settings)
    assert codec is not None
    [sealed] = await codec.encode([payload])
    return sealed


# --- the codec itself -----------------------------------------------------------------------


def test_without_a_key_the_converter_is_exactly_todays(settings: Settings) -> None:
    assert payload_codec(settings) is None
    assert data_converter(settings) is pydantic_data_converter


async def test_round_trip_marks_encoding_key_id_and_compression(settings: Settings) -> None:
    s = keyed(settings, llmflow_payload_key=KEY_A, llmflow_payload_key_id="2025-01")
    codec = payload_codec(s)
    assert codec is not None
    small = json_payload({"phone": "+1 555 0100"})
    large = json_payload({"address": "1 Main St, Springfield " * 100})
    assert len(large.SerializeToString()) > COMPRESS_OVER
    enc_small, enc_large = await codec.encode([small, large])
    for enc in (enc_small, enc_large):
        assert enc.metadata["encoding"] == ENCODING
        assert enc.metadata[META_KEY_ID] == b"2025-01"
        assert b"555" not in enc.data and b"Springfield" not in enc.data
    assert META_COMPRESSION not in enc_small.metadata
    assert enc_large.metadata[META_COMPRESSION] == b"zlib"
    assert len(enc_large.data) < len(large.data) // 4
    assert await codec.decode([enc_small, enc_large]) == [small, large]
    # Sealing twice never gives the same bytes (a fresh nonce each time).
    assert (await codec.encode([small]))[0].data != enc_small.data
    # Payloads that were never encrypted pass through decode untouched.
    assert await codec.decode([small]) == [small]


async def test_altered_payloads_fail_with_a_clear_error(settings: Settings) -> None:
    s = keyed(settings, llmflow_payload_key=KEY_A, llmflow_payload_key_id="a")
    codec = payload_codec(s)
    assert codec is not None
    sealed = await seal(s, json_payload({"name": "Ada"}))

    flipped = Payload()
    flipped.CopyFrom(sealed)
    flipped.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(PayloadDecodeError, match="failed authentication: it was altered"):
        await codec.decode([flipped])

    # The compression marker is authenticated too: adding it is an alteration.
    marked = Payload()
    marked.CopyFrom(sealed)
    marked.metadata[META_COMPRESSION] = b"zlib"
    with pytest.raises(PayloadDecodeError, match="failed authentication"):
        await codec.decode([marked])

    truncated = Payload()
    truncated.CopyFrom(sealed)
    truncated.data = sealed.data[:10]
    with pytest.raises(PayloadDecodeError, match="truncated"):
        await codec.decode([truncated])

    # A different key under the same id.
    other = payload_codec(keyed(settings, llmflow_payload_key=KEY_B, llmflow_payload_key_id="a"))
    assert other is not None
    with pytest.raises(PayloadDecodeError, match="different key under the same id"):
        await other.decode([sealed])


async def test_rotation_old_keys_still_open_what_they_sealed(settings: Settings) -> None:
    old = keyed(settings, llmflow_payload_key=KEY_A, llmflow_payload_key_id="2024")
    sealed = await seal(old, json_payload({"customer": "Grace"}))
    bare = await seal(keyed(settings, llmflow_payload_key=KEY_A), json_payload("bare id"))
    assert bare.metadata[META_KEY_ID] == derived_key_id(base64.b64decode(KEY_A)).encode()

    rotated = keyed(
        settings,
        llmflow_payload_key=KEY_B,
        llmflow_payload_key_id="2025",
        llmflow_payload_old_keys=f"2024:{KEY_A}, {KEY_A}",
    )
    codec = payload_codec(rotated)
    assert codec is not None
    assert (await codec.decode([sealed]))[0] == json_payload({"customer": "Grace"})
    assert (await codec.decode([bare]))[0] == json_payload("bare id")
    # New payloads are sealed with the current key.
    assert (await codec.encode([json_payload(1)]))[0].metadata[META_KEY_ID] == b"2025"

    without_old = payload_codec(keyed(settings, llmflow_payload_key=KEY_B))
    assert without_old is not None
    with pytest.raises(PayloadDecodeError, match=r"key id '2024'.*LLMFLOW_PAYLOAD_OLD_KEYS"):
        await without_old.decode([sealed])

    # Old keys alone: decode only (how encryption is turned off without losing old histories).
    decode_only = payload_codec(keyed(settings, llmflow_payload_old_keys=f"2024:{KEY_A}"))
    assert decode_only is not None and not decode_only.encrypts
    assert (await decode_only.decode([sealed]))[0] == json_payload({"customer": "Grace"})
    assert (await decode_only.encode([json_payload(1)]))[0] == json_payload(1)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"llmflow_payload_key": "not base64!!"}, "LLMFLOW_PAYLOAD_KEY is not base64"),
        (
            {"llmflow_payload_key": base64.b64encode(b"x" * 16).decode()},
            "must be 32 bytes .* it is 16 bytes",
        ),
        ({"llmflow_payload_key": KEY_A, "llmflow_payload_key_id": "a b"}, "LLMFLOW_PAYLOAD_KEY_ID"),
        ({"llmflow_payload_key_id": "a"}, "LLMFLOW_PAYLOAD_KEY_ID is set but"),
        (
            {"llmflow_payload_old_keys": f"a:{KEY_A},a:{KEY_B}"},
            "entry 2: key id 'a' is already used by a different key",
        ),
        ({"llmflow_payload_old_keys": "a:short"}, "LLMFLOW_PAYLOAD_OLD_KEYS entry 1"),
    ],
)
def test_malformed_key_settings_fail_in_one_line_without_the_key(
    settings: Settings, values: dict[str, str], message: str
) -> None:
    with pytest.raises(PayloadKeyError, match=message) as info:
        check_payload_key_config(keyed(settings, **values))
    for secret in ("not base64!!", KEY_A, KEY_B, "short"):
        assert secret not in str(info.value)


def test_make_dev_points_the_web_ui_at_the_codec_only_with_a_key(settings: Settings) -> None:
    base = keyed(settings, host="0.0.0.0", port=8123)
    cmd = devstack.dev_server_command(base, base.llmflow_state_dir)
    assert "--ui-codec-endpoint" not in cmd
    cmd = devstack.dev_server_command(
        keyed(base, llmflow_payload_key=KEY_A), base.llmflow_state_dir
    )
    assert cmd[cmd.index("--ui-codec-endpoint") + 1] == "http://127.0.0.1:8123/codec"


# --- through Temporal, the worker and the gateway --------------------------------------------


def history_bytes(history: WorkflowHistory) -> bytes:
    """Every byte of the history as Temporal stores and serves it (no base64 in the way)."""
    return b"".join(event.SerializeToString() for event in history.events)


async def run_job(
    api: httpx.AsyncClient, input_data: dict[str, Any], within: float = 30
) -> dict[str, Any]:
    resp = await api.post(
        "/api/v1/jobs", json={"workflow_name": "quickstart", "input_data": input_data}
    )
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    deadline = asyncio.get_running_loop().time() + within
    while True:
        body = (await api.get(f"/api/v1/jobs/{job_id}")).json()
        if body["status"] in ("completed", "failed", "cancelled", "timed_out"):
            return dict(body)
        assert asyncio.get_running_loop().time() < deadline, body["status"]
        await asyncio.sleep(0.2)


async def workflow_show(client: Client, workflow_id: str, *args: str) -> bytes:
    """`temporal workflow show -o json` of the run, as an operator would run it."""
    proc = await asyncio.create_subprocess_exec(
        str(TEMPORAL_BIN),
        "workflow",
        "show",
        "-w",
        workflow_id,
        "-o",
        "json",
        "--address",
        client.service_client.config.target_host,
        "--namespace",
        client.namespace,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode()
    return stdout


def input_bytes(shown: bytes) -> bytes:
    """The run's input payload's data in `temporal workflow show -o json` output."""
    attrs = json.loads(shown)["events"][0]["workflowExecutionStartedEventAttributes"]
    return base64.b64decode(attrs["input"]["payloads"][0]["data"])


async def test_encrypted_job_runs_and_only_the_codec_reads_its_history(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    marker = f"MARKER-{uuid.uuid4().hex}"
    topic = f"durable execution for {marker}, 742 Evergreen Terrace, +1 555 0142"
    upstream.route("POST", CHAT, openai_chat(json.dumps({"title": "T", "points": ["a", "b", "c"]})))
    old = keyed(
        settings, llmflow_payload_key=KEY_A, llmflow_payload_key_id="old", api_keys=[OPS_KEY]
    )
    client = with_converter(temporal_client, old)
    async with harness.running_worker(client, old, engine):
        async with gateway(old, engine=engine, temporal_client=client) as api:
            api.headers["Authorization"] = f"Bearer {OPS_SECRET}"
            job = await run_job(api, {"topic": topic})
            assert job["status"] == "completed", job
            assert job["output"]["topic"] == topic  # GET /jobs/{id} shows the output
            # A rerun reads the original input back through the codec.
            rerun = await api.post(f"/api/v1/jobs/{job['job_id']}/rerun", json={})
            assert rerun.status_code == 202, rerun.text

            # Temporal itself (a client without the codec) holds only ciphertext.
            handle = temporal_client.get_workflow_handle(job["job_id"])
            history = await handle.fetch_history()
            raw = history_bytes(history)
            assert marker.encode() not in raw and b"Evergreen" not in raw
            assert marker not in json.dumps(history.to_json_dict())
            described = await handle.describe()
            assert marker.encode() not in described.raw_description.SerializeToString()
            started = history.events[0].workflow_execution_started_event_attributes
            [sealed] = started.input.payloads
            assert sealed.metadata["encoding"] == ENCODING
            assert sealed.metadata[META_KEY_ID] == b"old"

            # The codec server opens it, in the Web UI's wire format.
            resp = await api.post(
                "/codec/decode", json=wire([sealed]), headers={"X-Namespace": "default"}
            )
            assert resp.status_code == 200, resp.text
            [opened] = from_wire(resp.json())
            assert opened.metadata["encoding"] == b"json/plain"
            assert json.loads(opened.data)["input_data"]["topic"] == topic

            # And /codec/encode seals what it is given, which /codec/decode opens again.
            plain = json_payload({"signal": marker})
            resp = await api.post("/codec/encode", json=wire([plain]))
            [resealed] = from_wire(resp.json())
            assert resealed.metadata["encoding"] == ENCODING
            assert marker.encode() not in resealed.data
            resp = await api.post("/codec/decode", json=wire([resealed]))
            assert from_wire(resp.json()) == [plain]

            # Temporal's own CLI: ciphertext without the codec server, the input through it.
            shown = await workflow_show(temporal_client, job["job_id"])
            assert marker.encode() not in shown and marker.encode() not in input_bytes(shown)
            shown = await workflow_show(
                temporal_client,
                job["job_id"],
                "--codec-endpoint",
                f"{str(api.base_url).rstrip('/')}/codec",
                "--codec-auth",
                f"Bearer {OPS_SECRET}",
            )
            assert json.loads(input_bytes(shown))["input_data"]["topic"] == topic

            # An altered payload is a 400 that says why.
            tampered = Payload()
            tampered.CopyFrom(sealed)
            tampered.data = sealed.data[:20] + bytes([sealed.data[20] ^ 0xFF]) + sealed.data[21:]
            resp = await api.post("/codec/decode", json=wire([tampered]))
            assert resp.status_code == 400
            assert resp.json()["error"] == "PayloadDecodeError"
            assert "payloads[0]" in resp.json()["message"]
            assert "failed authentication" in resp.json()["message"]

    # Replay: the encrypted history replays with the codec-enabled converter…
    await replay(history, data_converter=data_converter(old))
    code, out, err = await replay_cli(job["job_id"], client=client)
    assert code == 0, err
    assert out.startswith(f"replayed OK: {job['job_id']} (")
    # A divergence report still names the step: the summaries it reads are decrypted first.
    code, _, err = await replay_cli(job["job_id"], client=client, workflows=[SleepsAtTheEnd])
    assert code == 1
    assert re.search(r"step:\s+after step explain — event \d+ ", err), err
    # …and not without it: `llmflow replay` says why, instead of reporting a divergence.
    with pytest.raises(Exception, match=r"encrypted|encoding"):
        await replay(history)
    code, _, err = await replay_cli(job["job_id"], client=temporal_client)
    assert code == 2
    assert "its payloads are encrypted (key id 'old')" in err
    assert "LLMFLOW_PAYLOAD_OLD_KEYS" in err

    # Key rotation: a new key, the old one in LLMFLOW_PAYLOAD_OLD_KEYS, still opens it.
    rotated = keyed(
        settings,
        llmflow_payload_key=KEY_B,
        llmflow_payload_key_id="new",
        llmflow_payload_old_keys=f"old:{KEY_A}",
    )
    await replay(history, data_converter=data_converter(rotated))
    code, _, err = await replay_cli(
        job["job_id"],
        client=with_converter(temporal_client, keyed(settings, llmflow_payload_key=KEY_B)),
    )
    assert code == 2 and "key id 'old', which is not configured" in err, err
    async with gateway(rotated, engine=engine, temporal_client=temporal_client) as api:
        resp = await api.post("/codec/decode", json=wire([sealed]))
        assert resp.status_code == 200, resp.text
        assert json.loads(from_wire(resp.json())[0].data)["input_data"]["topic"] == topic
    async with gateway(
        keyed(settings, llmflow_payload_key=KEY_B), engine=engine, temporal_client=temporal_client
    ) as api:
        resp = await api.post("/codec/decode", json=wire([sealed]))
        assert resp.status_code == 400
        assert "key id 'old'" in resp.json()["message"]


async def test_without_a_key_histories_stay_as_they_were(
    temporal_client: Client, settings: Settings, engine: Engine, upstream: FakeHTTPServer
) -> None:
    """The control: the same job without a key leaves its input readable in the history (so
    the absence checked above is the codec's doing), and /codec passes plain payloads on."""
    marker = f"MARKER-{uuid.uuid4().hex}"
    upstream.route("POST", CHAT, openai_chat(json.dumps({"title": "T", "points": ["a", "b", "c"]})))
    async with harness.running_worker(temporal_client, settings, engine):
        async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
            job = await run_job(api, {"topic": marker})
            assert job["status"] == "completed", job
            history = await temporal_client.get_workflow_handle(job["job_id"]).fetch_history()
            assert marker.encode() in history_bytes(history)
            [plain] = history.events[0].workflow_execution_started_event_attributes.input.payloads
            resp = await api.post("/codec/decode", json=wire([plain]))
            assert resp.status_code == 200 and from_wire(resp.json()) == [plain]


# --- the codec server's guard and CORS -------------------------------------------------------


async def test_codec_needs_the_api_key_and_answers_the_web_uis_cors(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    s = keyed(
        settings,
        llmflow_payload_key=KEY_A,
        api_keys=["ops:codec-secret-0123"],
        temporal_ui_url="http://localhost:8233",
    )
    body = wire([await seal(s, json_payload({"email": "a@example.com"}))])
    ui = "http://localhost:8233"
    async with gateway(s, engine=engine, temporal_client=temporal_client) as api:
        anonymous = await api.post("/codec/decode", json=body, headers={"Origin": ui})
        wrong = await api.post("/codec/decode", json=body, headers={"Authorization": "Bearer nope"})
        keyed_ok = await api.post(
            "/codec/decode",
            json=body,
            headers={
                "Authorization": "Bearer codec-secret-0123",
                "X-Namespace": "default",
                "Origin": ui,
            },
        )
        secret_header = await api.post(
            "/codec/encode", json=body, headers={"X-API-Secret": "codec-secret-0123"}
        )
        preflight = await api.options(
            "/codec/decode",
            headers={
                "Origin": ui,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
            },
        )
        loopback_alias = await api.options(
            "/codec/encode",
            headers={"Origin": "http://127.0.0.1:8233", "Access-Control-Request-Method": "POST"},
        )
        stranger = await api.options(
            "/codec/decode",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        stranger_post = await api.post(
            "/codec/decode",
            json=body,
            headers={"Authorization": "Bearer codec-secret-0123", "Origin": "https://evil.example"},
        )

    assert anonymous.status_code == 401 and wrong.status_code == 401
    # The 401 carries CORS headers, so the browser lets the UI see why.
    assert anonymous.headers["access-control-allow-origin"] == ui
    assert keyed_ok.status_code == 200, keyed_ok.text
    assert json.loads(from_wire(keyed_ok.json())[0].data) == {"email": "a@example.com"}
    assert keyed_ok.headers["access-control-allow-origin"] == ui
    assert keyed_ok.headers["access-control-allow-credentials"] == "true"
    assert secret_header.status_code == 200

    assert preflight.status_code == 204, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ui
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "x-namespace"} <= {
        h.strip() for h in allowed.split(",")
    }
    assert loopback_alias.status_code == 204
    assert loopback_alias.headers["access-control-allow-origin"] == "http://127.0.0.1:8233"
    assert stranger.status_code == 403
    assert "access-control-allow-origin" not in stranger.headers
    assert "TEMPORAL_UI_URL" in stranger.json()["message"]
    assert stranger_post.status_code == 200  # the key decides; the browser is CORS's business
    assert "access-control-allow-origin" not in stranger_post.headers


async def test_codec_rejects_what_is_not_a_payloads_message(
    temporal_client: Client, settings: Settings, engine: Engine
) -> None:
    async with gateway(settings, engine=engine, temporal_client=temporal_client) as api:
        not_b64 = await api.post("/codec/decode", json={"payloads": [{"data": "%%%"}]})
        wrong_shape = await api.post("/codec/decode", json={"payloads": "x"})
        empty = await api.post("/codec/decode", json={"payloads": []})
    assert not_b64.status_code == 400 and "payloads[0].data is not base64" in not_b64.text
    assert wrong_shape.status_code == 422
    assert empty.status_code == 200 and empty.json() == {"payloads": []}
