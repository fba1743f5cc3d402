"""SSRF guard: URL checks, address classification, and the connect-time backend.

No test here opens a socket to a non-loopback address: non-loopback cases either run through a
recording backend that never connects, or only reach the guard's rejection.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpcore
import httpx
import pytest

from core import ssrf
from core.ssrf import BlockedAddressError, GuardedBackend, blocked_reason, check_url
from tests.fakes.http_server import FakeHTTPServer, Response


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Stands in for the socket layer: records where it was asked to connect, never connects."""

    def __init__(self, fail_for: set[str] | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail_for = fail_for

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((host, port))
        if self.fail_for is None or host in self.fail_for:
            raise httpcore.ConnectError(f"recording backend: no connection to {host}")
        return object()  # a "stream" is all connect_tcp has to return

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def resolver_for(table: dict[str, list[str]]) -> ssrf.Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


# --- classification ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "link-local (cloud metadata endpoint)"),
        ("fe80::1", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("fec0::1", "site-local"),
        ("192.0.2.10", "special-purpose"),
        ("::ffff:127.0.0.1", "127.0.0.1, which is loopback"),
        ("::ffff:169.254.169.254", "169.254.169.254, which is link-local"),
        ("::ffff:10.0.0.1", "10.0.0.1, which is private"),
        ("::7f00:1", "127.0.0.1, which is loopback"),  # IPv4-compatible
        ("64:ff9b::a00:1", "10.0.0.1, which is private"),  # NAT64
        ("2002:7f00:1::", "127.0.0.1, which is loopback"),  # 6to4
        ("2002:a9fe:a9fe::1", "169.254.169.254, which is link-local"),
    ],
)
def test_blocked_addresses_name_the_reason(address: str, reason: str) -> None:
    found = blocked_reason(address)
    assert found is not None and reason in found


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "::ffff:1.1.1.1"]
)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(address) is None


# --- check_url ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/file",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
    ],
)
def test_non_http_schemes_rejected(url: str) -> None:
    with pytest.raises(BlockedAddressError, match="scheme"):
        check_url(url, allow_private=True)  # the scheme rule holds even in development


@pytest.mark.parametrize("url", ["http:///path", "https://", "not a url at all"])
def test_urls_without_host_rejected(url: str) -> None:
    with pytest.raises(BlockedAddressError):
        check_url(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]:8080/", "loopback"),
        ("http://0x7f000001/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://0177.0.0.1/", "invalid URL"),  # httpx itself refuses octal dotted quads
        ("http://127.1/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
    ],
)
def test_literal_blocked_hosts_rejected_early(url: str, reason: str) -> None:
    with pytest.raises(BlockedAddressError, match=reason):
        check_url(url)


def test_public_and_hostname_urls_pass_check_url() -> None:
    check_url("https://api.example.com/v1?x=1")
    check_url("http://93.184.216.34:8080/")
    check_url("http://localhost/")  # names are judged at connect time, not here
    check_url("http://127.0.0.1/", allow_private=True)


# --- connect time: through the real guarded client, loopback targets only ---------------------


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "0x7f000001", "2130706433", "127.1", "[::ffff:127.0.0.1]", "[::1]"],
)
async def test_guarded_client_rejects_loopback_spellings_before_connecting(
    upstream: FakeHTTPServer, host: str
) -> None:
    # The URL skips check_url on purpose: this is the connect-time guard on its own.
    upstream.route("GET", "/secret", Response(200, {"secret": True}))
    port = httpx.URL(upstream.url).port
    async with ssrf.guarded_client(allow_private=False) as client:
        with pytest.raises(BlockedAddressError, match="loopback"):
            await client.get(f"http://{host}:{port}/secret")
    assert upstream.requests == []


async def test_hostname_resolving_to_blocked_address_is_rejected(
    upstream: FakeHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real resolver path (loop.getaddrinfo) answers loopback for a public-looking name.
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def fake_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "internal.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return await real(host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    port = httpx.URL(upstream.url).port
    async with ssrf.guarded_client(allow_private=False) as client:
        with pytest.raises(BlockedAddressError, match=r"internal\.example \(127\.0\.0\.1\)"):
            await client.get(f"http://internal.example:{port}/")
    assert upstream.requests == []


async def test_allow_private_reaches_loopback(upstream: FakeHTTPServer) -> None:
    upstream.route("GET", "/ok", Response(200, {"ok": True}))
    async with ssrf.guarded_client(allow_private=True) as client:
        response = await client.get(f"{upstream.url}/ok")
    assert response.status_code == 200 and response.json() == {"ok": True}


async def test_redirect_to_loopback_is_not_followed(upstream: FakeHTTPServer) -> None:
    upstream.route("GET", "/start", Response(302, "", {"Location": f"{upstream.url}/secret"}))
    upstream.route("GET", "/secret", Response(200, {"secret": True}))
    async with ssrf.guarded_client(allow_private=True) as client:
        response = await client.get(f"{upstream.url}/start")
    assert response.status_code == 302
    assert [r.path for r in upstream.requests] == ["/start"]


async def test_environment_proxies_are_ignored(
    upstream: FakeHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy would bypass the guarded pool; this one is a closed port, so using it would fail.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    upstream.route("GET", "/direct", Response(200, {"direct": True}))
    async with ssrf.guarded_client(allow_private=True) as client:
        response = await client.get(f"{upstream.url}/direct")
    assert response.json() == {"direct": True}


async def test_unknown_host_is_a_connect_error() -> None:
    resolver = resolver_for({})
    transport = ssrf.guarded_transport(allow_private=False, resolver=resolver)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError, match=r"cannot resolve nowhere\.invalid"):
            await client.get("http://nowhere.invalid/")


# --- connect time: the backend alone, with a socket layer that never connects -----------------


@pytest.mark.parametrize(
    ("host", "addresses", "reason"),
    [
        ("169.254.169.254", ["169.254.169.254"], "link-local"),
        ("::1", ["::1"], "loopback"),
        ("10.0.0.1", ["10.0.0.1"], "private"),
        ("100.64.0.1", ["100.64.0.1"], "carrier-grade NAT"),
        ("internal.example", ["10.1.2.3"], r"internal\.example \(10\.1\.2\.3\) is private"),
        ("v6.example", ["::ffff:10.1.2.3"], "private"),
        # A rebinding resolver mixing public and private answers: one bad answer is enough.
        ("rebind.example", ["93.184.216.34", "10.0.0.5"], "private"),
    ],
)
async def test_backend_rejects_blocked_resolutions_without_connecting(
    host: str, addresses: list[str], reason: str
) -> None:
    inner = RecordingBackend()
    backend = GuardedBackend(
        allow_private=False, inner=inner, resolver=resolver_for({host: addresses})
    )
    with pytest.raises(BlockedAddressError, match=reason):
        await backend.connect_tcp(host, 80, timeout=1.0)
    assert inner.calls == []


async def test_backend_uses_the_module_resolver_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssrf, "resolve_host", resolver_for({"internal.example": ["10.1.2.3"]}))
    inner = RecordingBackend()
    with pytest.raises(BlockedAddressError, match=r"10\.1\.2\.3"):
        await GuardedBackend(allow_private=False, inner=inner).connect_tcp("internal.example", 80)
    assert inner.calls == []


async def test_backend_connects_to_the_vetted_ip_not_the_name() -> None:
    # Connecting by name would resolve again, and a rebinding DNS could answer differently.
    inner = RecordingBackend(fail_for={"93.184.216.34"})
    backend = GuardedBackend(
        allow_private=False,
        inner=inner,
        resolver=resolver_for({"public.example": ["93.184.216.34", "93.184.216.35"]}),
    )
    stream = await backend.connect_tcp("public.example", 443, timeout=1.0)
    assert stream is not None
    # The first address failed, so the next vetted one was tried.
    assert inner.calls == [("93.184.216.34", 443), ("93.184.216.35", 443)]


async def test_backend_with_allow_private_passes_the_name_through() -> None:
    inner = RecordingBackend(fail_for=set())
    backend = GuardedBackend(allow_private=True, inner=inner, resolver=resolver_for({}))
    await backend.connect_tcp("internal.example", 80)
    assert inner.calls == [("internal.example", 80)]


async def test_backend_refuses_unix_sockets_unless_private_allowed() -> None:
    with pytest.raises(BlockedAddressError):
        await GuardedBackend(allow_private=False).connect_unix_socket("/var/run/docker.sock")
