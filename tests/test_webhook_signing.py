"""Webhook signing (pure) and the `webhook_send` activity against a real receiver on 127.0.0.1."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.webhook_step import WebhookActivities, WebhookSendInput, WebhookSendOutput
from core.settings import Settings
from core.ssrf import guarded_client
from core.webhook_signing import (
    build_webhook_headers,
    encode_body,
    sign_hex,
    standard_webhooks_signature,
    verify_hex_signature,
    verify_standard_webhooks_signature,
)
from tests.fakes.http_server import FakeHTTPServer, Request, Response

# A shape no redactor pattern knows: only exact-value scrubbing can hide it.
SECRET = "hooksecret-4Rt9Lm2Qx7"

# --- pure signing -------------------------------------------------------------------------------


def test_standard_webhooks_spec_vector() -> None:
    signature = standard_webhooks_signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_standard_signature_uses_raw_utf8_key_without_whsec_prefix() -> None:
    body = b'{"a":1}'
    expected = hmac.new(b"plain-secret", b"id-1.1700000000." + body, hashlib.sha256).digest()
    assert standard_webhooks_signature("plain-secret", "id-1", 1700000000, body) == (
        "v1," + base64.b64encode(expected).decode()
    )


def test_malformed_whsec_secret_is_an_error() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        standard_webhooks_signature("whsec_***not base64***", "id", 1, b"{}")


def test_sign_hex_known_vector() -> None:
    # RFC-style reference value for HMAC-SHA256("key", "The quick brown fox…").
    assert sign_hex("key", b"The quick brown fox jumps over the lazy dog") == (
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    )


def test_verify_hex_signature() -> None:
    body = b'{"event":"entry.create"}'
    header = sign_hex(SECRET, body)
    assert verify_hex_signature(SECRET, body, header)
    assert verify_hex_signature(SECRET, body, header.upper().replace("SHA256=", "sha256="))
    assert verify_hex_signature(SECRET, body, header.removeprefix("sha256="))
    assert not verify_hex_signature(SECRET, body + b" ", header)
    assert not verify_hex_signature("other-secret", body, header)
    assert not verify_hex_signature(SECRET, body, "")
    assert not verify_hex_signature(SECRET, body, None)
    assert not verify_hex_signature("", body, sign_hex("", body))


def test_verify_standard_signature_accepts_any_listed_entry() -> None:
    body = b"{}"
    good = standard_webhooks_signature(SECRET, "id", 5, body)
    assert verify_standard_webhooks_signature(SECRET, "id", 5, body, f"v1,bogus= {good}")
    assert not verify_standard_webhooks_signature(SECRET, "id", 6, body, good)
    assert not verify_standard_webhooks_signature(SECRET, "other", 5, body, good)


def test_encode_body_is_compact_sorted_utf8() -> None:
    body = encode_body(
        {"b": 1, "a": {"z": "é", "y": [1, 2]}, "when": datetime(2024, 1, 2, tzinfo=UTC)}
    )
    assert body == '{"a":{"y":[1,2],"z":"é"},"b":1,"when":"2024-01-02T00:00:00+00:00"}'.encode()
    assert encode_body({"a": 1, "b": 2}) == encode_body({"b": 2, "a": 1})
    with pytest.raises(ValueError):
        encode_body({"x": float("nan")})


def test_build_webhook_headers() -> None:
    body = encode_body({"event": "workflow.completed"})
    headers = build_webhook_headers(
        secret=SECRET,
        body=body,
        event="workflow.completed",
        delivery_id="job-1:notify",
        timestamp=1700000000,
        version="9.9.9",
    )
    assert headers == {
        "Content-Type": "application/json",
        "User-Agent": "LLM-Workflow-Service/9.9.9",
        "X-Webhook-Signature": sign_hex(SECRET, body),
        "X-Webhook-Event": "workflow.completed",
        "X-Webhook-Id": "job-1:notify",
        "webhook-id": "job-1:notify",
        "webhook-timestamp": "1700000000",
        "webhook-signature": standard_webhooks_signature(SECRET, "job-1:notify", 1700000000, body),
    }


# --- the webhook_send activity --------------------------------------------------------------------


def make_settings(*, secret: str | None = SECRET, allow_private: bool = True) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="test",
        llm_webhook_secret=secret,
        webhook_allow_private=allow_private,
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with guarded_client(allow_private=True) as c:
        yield c


@pytest.fixture
def webhooks(client: httpx.AsyncClient) -> WebhookActivities:
    return WebhookActivities(make_settings(), client)


PAYLOAD = {"event": "step.done", "job_id": "job-1", "data": {"text": "héllo", "n": 3}}


def send_input(url: str, **overrides: Any) -> WebhookSendInput:
    fields: dict[str, Any] = {
        "step_id": "notify",
        "job_id": "job-1",
        "url": url,
        "payload": PAYLOAD,
        "event": "step.done",
        "delivery_id": "job-1:notify",
        **overrides,
    }
    return WebhookSendInput(**fields)


async def send(
    acts: WebhookActivities, inp: WebhookSendInput, *, attempt: int = 1
) -> WebhookSendOutput:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    return await env.run(acts.webhook_send, inp)


async def send_failing(
    acts: WebhookActivities, inp: WebhookSendInput, *, attempt: int = 1
) -> ApplicationError:
    with pytest.raises(ApplicationError) as info:
        await send(acts, inp, attempt=attempt)
    return info.value


def assert_signed(req: Request, *, secret: str = SECRET) -> None:
    """Recompute both signatures over the exact bytes the receiver got."""
    expected_hex = "sha256=" + hmac.new(secret.encode(), req.body, hashlib.sha256).hexdigest()
    assert req.headers["x-webhook-signature"] == expected_hex
    signed = f"{req.headers['webhook-id']}.{req.headers['webhook-timestamp']}.".encode() + req.body
    expected_v1 = (
        "v1,"
        + base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()
    )
    assert req.headers["webhook-signature"] == expected_v1


async def test_delivery_is_signed_over_the_raw_body(
    upstream: FakeHTTPServer, webhooks: WebhookActivities
) -> None:
    upstream.route("POST", "/hook", Response(200, "thanks"))
    before = int(time.time())
    out = await send(webhooks, send_input(f"{upstream.url}/hook"))
    after = int(time.time())

    (req,) = upstream.requests_to("/hook")
    assert json.loads(req.body) == PAYLOAD
    assert req.headers["content-type"] == "application/json"
    assert req.headers["user-agent"].startswith("LLM-Workflow-Service/")
    assert req.headers["x-webhook-event"] == "step.done"
    assert req.headers["x-webhook-id"] == req.headers["webhook-id"] == "job-1:notify"
    assert before <= int(req.headers["webhook-timestamp"]) <= after
    assert_signed(req)
    assert verify_hex_signature(SECRET, req.body, req.headers["x-webhook-signature"])
    assert out.status_code == 200
    assert out.delivery_id == "job-1:notify"
    assert out.attempt == 1
    assert out.response_snippet == "thanks"
    assert out.duration_ms >= 0


async def test_retry_keeps_the_delivery_id(
    upstream: FakeHTTPServer, webhooks: WebhookActivities
) -> None:
    upstream.route("POST", "/hook", [Response(503, "down"), Response(200, "ok")])
    inp = send_input(f"{upstream.url}/hook")
    err = await send_failing(webhooks, inp, attempt=1)
    assert err.type == "UPSTREAM_ERROR" and not err.non_retryable
    out = await send(webhooks, inp, attempt=2)
    assert out.status_code == 200 and out.attempt == 2

    first, second = upstream.requests_to("/hook")
    assert first.headers["x-webhook-id"] == second.headers["x-webhook-id"] == "job-1:notify"
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    for req in (first, second):
        assert_signed(req)


async def test_410_gives_up(upstream: FakeHTTPServer, webhooks: WebhookActivities) -> None:
    upstream.route("POST", "/hook", Response(410, "endpoint retired"))
    err = await send_failing(webhooks, send_input(f"{upstream.url}/hook"))
    assert err.non_retryable
    assert "410" in err.message


@pytest.mark.parametrize("status", [400, 404, 409, 422])
async def test_other_4xx_give_up(
    upstream: FakeHTTPServer, webhooks: WebhookActivities, status: int
) -> None:
    upstream.route("POST", "/hook", Response(status, "no"))
    err = await send_failing(webhooks, send_input(f"{upstream.url}/hook"))
    assert err.non_retryable
    assert f"HTTP {status}" in err.message


async def test_401_is_an_auth_error(upstream: FakeHTTPServer, webhooks: WebhookActivities) -> None:
    upstream.route("POST", "/hook", Response(401, "bad signature"))
    err = await send_failing(webhooks, send_input(f"{upstream.url}/hook"))
    assert err.type == "AUTH_ERROR" and err.non_retryable


async def test_429_retries_after_retry_after(
    upstream: FakeHTTPServer, webhooks: WebhookActivities
) -> None:
    upstream.route("POST", "/hook", Response(429, "slow down", {"Retry-After": "7"}))
    err = await send_failing(webhooks, send_input(f"{upstream.url}/hook"))
    assert err.type == "RATE_LIMITED"
    assert not err.non_retryable
    assert err.next_retry_delay == timedelta(seconds=7)


@pytest.mark.parametrize("status", [408, 500, 502])
async def test_408_and_5xx_retry(
    upstream: FakeHTTPServer, webhooks: WebhookActivities, status: int
) -> None:
    upstream.route("POST", "/hook", Response(status, "oops"))
    err = await send_failing(webhooks, send_input(f"{upstream.url}/hook"))
    assert not err.non_retryable


async def test_timeout_retries(upstream: FakeHTTPServer, webhooks: WebhookActivities) -> None:
    upstream.route("POST", "/hook", Response(200, "late", delay=1.0))
    err = await send_failing(webhooks, send_input(f"{upstream.url}/hook", timeout_seconds=0.2))
    assert err.type == "TIMEOUT" and not err.non_retryable


async def test_301_is_not_followed(upstream: FakeHTTPServer, webhooks: WebhookActivities) -> None:
    upstream.route("POST", "/hook", Response(301, "", {"Location": f"{upstream.url}/elsewhere"}))
    err = await send_failing(webhooks, send_input(f"{upstream.url}/hook"))
    assert err.non_retryable
    assert "not followed" in err.message
    assert [r.path for r in upstream.requests] == ["/hook"]


async def deliver_failing(acts: WebhookActivities, inp: WebhookSendInput) -> ApplicationError:
    """A job callback attempt (deliver_job_webhook), which has its own retry rules."""
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(acts.deliver_job_webhook, inp)
    return info.value


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 500])
async def test_callbacks_retry_every_non_2xx_but_410(
    upstream: FakeHTTPServer, webhooks: WebhookActivities, status: int
) -> None:
    # A receiver answers 401 while its secret rotates and 500 on its own bugs: both heal.
    upstream.route("POST", "/hook", Response(status, "not now", {"Retry-After": "9"}))
    err = await deliver_failing(webhooks, send_input(f"{upstream.url}/hook"))
    assert not err.non_retryable
    assert f"HTTP {status}" in err.message
    assert err.next_retry_delay == timedelta(seconds=9)


async def test_callbacks_stop_on_410(upstream: FakeHTTPServer, webhooks: WebhookActivities) -> None:
    upstream.route("POST", "/hook", Response(410, "retired"))
    err = await deliver_failing(webhooks, send_input(f"{upstream.url}/hook"))
    assert err.non_retryable


async def test_callbacks_retry_redirects_without_following_them(
    upstream: FakeHTTPServer, webhooks: WebhookActivities
) -> None:
    upstream.route("POST", "/hook", Response(302, "", {"Location": f"{upstream.url}/elsewhere"}))
    err = await deliver_failing(webhooks, send_input(f"{upstream.url}/hook"))
    assert not err.non_retryable and "not followed" in err.message
    assert [r.path for r in upstream.requests] == ["/hook"]


async def test_missing_secret_is_a_config_error(
    upstream: FakeHTTPServer, client: httpx.AsyncClient
) -> None:
    acts = WebhookActivities(make_settings(secret=None), client)
    err = await send_failing(acts, send_input(f"{upstream.url}/hook"))
    assert err.type == "CONFIG_ERROR" and err.non_retryable
    assert "LLM_WEBHOOK_SECRET" in err.message
    assert upstream.requests == []


async def test_unsupported_secret_ref_is_a_config_error(
    upstream: FakeHTTPServer, webhooks: WebhookActivities
) -> None:
    err = await send_failing(webhooks, send_input(f"{upstream.url}/hook", secret_ref="job:123"))
    assert err.type == "CONFIG_ERROR" and err.non_retryable
    assert upstream.requests == []


async def test_secret_ref_env_uses_the_settings_secret(
    upstream: FakeHTTPServer, webhooks: WebhookActivities
) -> None:
    upstream.route("POST", "/hook", Response(204, b""))
    out = await send(webhooks, send_input(f"{upstream.url}/hook", secret_ref="env"))
    assert out.status_code == 204 and out.response_snippet == ""
    assert_signed(upstream.requests_to("/hook")[0])


async def test_response_snippet_is_redacted_and_short(
    upstream: FakeHTTPServer, webhooks: WebhookActivities
) -> None:
    echo = f"got secret {SECRET} and token=tk_9f8e7d6c5b " + "x" * 5000
    upstream.route("POST", "/hook", Response(200, echo))
    out = await send(webhooks, send_input(f"{upstream.url}/hook"))
    assert len(out.response_snippet) <= 500
    assert SECRET not in out.response_snippet
    assert "tk_9f8e7d6c5b" not in out.response_snippet
    assert out.response_snippet.startswith("got secret [REDACTED]")


async def test_secret_echoed_in_an_error_body_stays_out_of_the_error(
    upstream: FakeHTTPServer, webhooks: WebhookActivities
) -> None:
    upstream.route("POST", "/hook", Response(400, f"signature mismatch for secret {SECRET}"))
    err = await send_failing(webhooks, send_input(f"{upstream.url}/hook"))
    assert SECRET not in err.message
    assert SECRET not in json.dumps(err.details)


async def test_blocked_url_is_url_blocked(upstream: FakeHTTPServer) -> None:
    async with guarded_client(allow_private=False) as client:
        acts = WebhookActivities(make_settings(allow_private=False), client)
        port = httpx.URL(upstream.url).port
        for url in (f"{upstream.url}/hook", f"http://localhost:{port}/hook"):
            err = await send_failing(acts, send_input(url))
            assert err.type == "URL_BLOCKED" and err.non_retryable
    assert upstream.requests == []
