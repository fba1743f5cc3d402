"""The `http` step activity against a real HTTP server on 127.0.0.1 (allow_private=True)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import http_step
from activities.http_step import HttpActivities, HttpRequestInput, HttpRequestOutput
from core.settings import Settings
from core.ssrf import guarded_client
from tests.fakes.http_server import FakeHTTPServer, Response


def make_settings(*, allow_private: bool) -> Settings:
    return Settings(_env_file=None, environment="test", webhook_allow_private=allow_private)  # type: ignore[call-arg]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with guarded_client(allow_private=True) as c:
        yield c


@pytest.fixture
def activities(client: httpx.AsyncClient) -> HttpActivities:
    return HttpActivities(make_settings(allow_private=True), client)


async def call(acts: HttpActivities, **fields: Any) -> HttpRequestOutput:
    return await ActivityEnvironment().run(
        acts.http_request, HttpRequestInput(step_id="fetch", **fields)
    )


async def call_failing(acts: HttpActivities, **fields: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as info:
        await call(acts, **fields)
    return info.value


async def test_get_with_query_returns_parsed_json_and_redacted_headers(
    upstream: FakeHTTPServer, activities: HttpActivities
) -> None:
    upstream.route(
        "GET",
        "/items",
        lambda req: Response(
            200,
            {"query": req.query, "seen_header": req.headers.get("x-trace")},
            {"Set-Cookie": "session=abc123secret", "X-Request-Id": "r-1"},
        ),
    )
    out = await call(
        activities,
        url=f"{upstream.url}/items",
        query={"q": "coffee", "n": 2, "open": True, "filter": {"a": 1}},
        headers={"X-Trace": "t-42"},
    )
    assert out.status_code == 200
    assert out.attempt == 1
    assert out.data == {
        "query": {"q": "coffee", "n": "2", "open": "true", "filter": '{"a":1}'},
        "seen_header": "t-42",
    }
    assert out.headers["set-cookie"] == "[REDACTED]"
    assert out.headers["x-request-id"] == "r-1"
    assert "abc123secret" not in str(out.model_dump())


async def test_post_json_body(upstream: FakeHTTPServer, activities: HttpActivities) -> None:
    upstream.route("POST", "/orders", Response(201, {"id": "o-1"}))
    out = await call(
        activities,
        method="post",
        url=f"{upstream.url}/orders",
        json_body={"item": "tea", "qty": 3},
    )
    assert out.status_code == 201 and out.data == {"id": "o-1"}
    (req,) = upstream.requests_to("/orders")
    assert req.method == "POST"
    assert req.headers["content-type"] == "application/json"
    assert req.json() == {"item": "tea", "qty": 3}


async def test_text_response_is_returned_as_text_and_capped(
    upstream: FakeHTTPServer, activities: HttpActivities, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.route("GET", "/page", Response(200, "hello " * 10))
    monkeypatch.setattr(http_step, "MAX_BODY_BYTES", 11)
    out = await call(activities, url=f"{upstream.url}/page")
    assert out.data == "hello hello"


async def test_oversized_json_fails_instead_of_changing_type(
    upstream: FakeHTTPServer, activities: HttpActivities, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.route("GET", "/big", Response(200, {"items": list(range(100))}))
    monkeypatch.setattr(http_step, "MAX_BODY_BYTES", 50)
    err = await call_failing(activities, url=f"{upstream.url}/big")
    assert err.type == "OUTPUT_INVALID" and err.non_retryable


async def test_empty_body_is_none(upstream: FakeHTTPServer, activities: HttpActivities) -> None:
    upstream.route("DELETE", "/orders/1", Response(204, b""))
    out = await call(activities, method="DELETE", url=f"{upstream.url}/orders/1")
    assert out.status_code == 204 and out.data is None


async def test_404_is_not_retryable(upstream: FakeHTTPServer, activities: HttpActivities) -> None:
    err = await call_failing(activities, url=f"{upstream.url}/missing")
    assert err.type == "UPSTREAM_NOT_FOUND"
    assert err.non_retryable
    assert "404" in err.message


async def test_503_with_retry_after_is_retryable_after_that_delay(
    upstream: FakeHTTPServer, activities: HttpActivities
) -> None:
    upstream.route("GET", "/busy", Response(503, {"error": "busy"}, {"Retry-After": "3"}))
    err = await call_failing(activities, url=f"{upstream.url}/busy")
    assert err.type == "UPSTREAM_ERROR"
    assert not err.non_retryable
    assert err.next_retry_delay == timedelta(seconds=3)


async def test_expected_status_list_is_honoured(
    upstream: FakeHTTPServer, activities: HttpActivities
) -> None:
    upstream.route("GET", "/gone", Response(404, {"error": "nope"}))
    out = await call(activities, url=f"{upstream.url}/gone", expected_status=[200, 404])
    assert out.status_code == 404 and out.data == {"error": "nope"}

    upstream.route("GET", "/created", Response(200, {"ok": True}))
    err = await call_failing(activities, url=f"{upstream.url}/created", expected_status=[201])
    assert err.non_retryable
    assert "HTTP 200" in err.message
    assert err.details[0]["details"]["config"] == {"expected_status": [201]}


async def test_redirect_is_not_followed(
    upstream: FakeHTTPServer, activities: HttpActivities
) -> None:
    upstream.route("GET", "/old", Response(302, "", {"Location": f"{upstream.url}/secret"}))
    upstream.route("GET", "/secret", Response(200, {"secret": True}))
    err = await call_failing(activities, url=f"{upstream.url}/old")
    assert err.type == "UPSTREAM_REJECTED"
    assert err.non_retryable
    assert "not followed" in err.message
    assert [r.path for r in upstream.requests] == ["/old"]

    # Listed as expected, the 3xx itself is the result (still not followed).
    out = await call(activities, url=f"{upstream.url}/old", expected_status=[302])
    assert out.status_code == 302
    assert [r.path for r in upstream.requests] == ["/old", "/old"]


async def test_blocked_url_is_url_blocked_and_not_retryable(upstream: FakeHTTPServer) -> None:
    async with guarded_client(allow_private=False) as client:
        acts = HttpActivities(make_settings(allow_private=False), client)
        # A literal loopback IP is refused before any request is built…
        early = await call_failing(acts, url=f"{upstream.url}/items")
        # …and a name that resolves to loopback is refused at connect time.
        port = httpx.URL(upstream.url).port
        late = await call_failing(acts, url=f"http://localhost:{port}/items")
    for err in (early, late):
        assert err.type == "URL_BLOCKED"
        assert err.non_retryable
        assert "loopback" in err.message
    assert upstream.requests == []


async def test_non_http_scheme_is_url_blocked(activities: HttpActivities) -> None:
    err = await call_failing(activities, url="file:///etc/passwd")
    assert err.type == "URL_BLOCKED" and err.non_retryable


async def test_connection_refused_is_retryable(activities: HttpActivities) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    err = await call_failing(activities, url=f"http://127.0.0.1:{port}/")
    assert err.type == "CONNECTION_ERROR" and not err.non_retryable


async def test_timeout_is_retryable(upstream: FakeHTTPServer, activities: HttpActivities) -> None:
    upstream.route("GET", "/slow", Response(200, {"late": True}, delay=1.0))
    err = await call_failing(activities, url=f"{upstream.url}/slow", timeout_seconds=0.2)
    assert err.type == "TIMEOUT" and not err.non_retryable


async def test_unknown_method_is_a_validation_error(activities: HttpActivities) -> None:
    err = await call_failing(activities, method="TRACE", url="http://127.0.0.1:1/")
    assert err.type == "VALIDATION_ERROR" and err.non_retryable


async def test_query_secrets_stay_out_of_error_messages(
    upstream: FakeHTTPServer, activities: HttpActivities
) -> None:
    upstream.route(
        "GET", "/auth", lambda req: Response(400, f"rejected api_key={req.query.get('api_key')}")
    )
    err = await call_failing(
        activities, url=f"{upstream.url}/auth", query={"api_key": "qk-Zx81mmPq0Lw"}
    )
    assert err.non_retryable
    assert "qk-Zx81mmPq0Lw" not in err.message
    assert "qk-Zx81mmPq0Lw" not in str(err.details)
