"""SSRF guard for user-supplied URLs: `webhook_url`, `http` and `webhook` steps.

The check runs where the socket is opened, not when the URL is parsed: the guarded network
backend resolves the host itself, vets every address, and then connects to the vetted IP. A
DNS answer that flips between a check and the connect (DNS rebinding) therefore cannot slip a
private address through, and odd literal notations (`0x7f000001`, `2130706433`, `127.1`) are
caught because the resolver turns them into ordinary addresses first. Redirects are never
followed, so a public host cannot bounce the request to an internal one either.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

ALLOWED_SCHEMES = ("http", "https")
USER_AGENT = "LLM-Workflow-Service/0.1.0"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_ULA = ipaddress.ip_network("fc00::/7")
# IPv6 forms whose destination is really the embedded IPv4 address (mapped, compat, NAT64):
# they are judged by that IPv4 address alone, so NAT64 deployments can still reach public hosts.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_COMPAT = ipaddress.ip_network("::/96")


class BlockedAddressError(Exception):
    """The URL or the address it resolves to may not be contacted."""


def _base_reason(ip: IPAddress) -> str | None:
    # Most specific label first: the message tells an operator what was hit.
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        if ip == ipaddress.IPv4Address("169.254.169.254"):
            return "link-local (cloud metadata endpoint)"
        return "link-local"
    if ip.version == 4 and ip in _CGNAT:
        return "carrier-grade NAT (100.64.0.0/10)"
    if ip.is_multicast:
        return "multicast"
    if any(ip in net for net in _RFC1918) or (ip.version == 6 and ip in _ULA):
        return "private"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private or not ip.is_global:
        return "special-purpose (not globally routable)"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address | None, bool]:
    """(embedded IPv4, whether the IPv4 is the real destination) for transition forms."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, True
    if any(ip in net for net in _NAT64) or (ip in _COMPAT and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), True
    if ip.sixtofour is not None:
        return ip.sixtofour, False
    if ip.teredo is not None:
        return ip.teredo[1], False  # the client address, which the relay forwards to
    return None, False


def blocked_reason(address: str | IPAddress) -> str | None:
    """Why `address` must not be contacted, or None when it is a public address."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        embedded, is_destination = _embedded_ipv4(ip)
        if embedded is not None:
            inner = _base_reason(embedded)
            if inner:
                return f"an IPv6 form of {embedded}, which is {inner}"
            if is_destination:
                return None
    return _base_reason(ip)


def _literal_ip(host: str) -> IPAddress | None:
    """The address a literal host denotes, including legacy IPv4 spellings inet_aton accepts."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_url(url: str, *, allow_private: bool = False) -> None:
    """Reject what can be rejected without DNS: bad scheme, no host, blocked literal IPs.

    Hostnames are vetted later, at connect time, by the guarded client. `allow_private`
    (WEBHOOK_ALLOW_PRIVATE) lifts the address check but never the scheme check.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise BlockedAddressError(f"invalid URL: {exc}") from None
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise BlockedAddressError(
            f"URL scheme {parsed.scheme or '(none)'!r} is not allowed (http/https only)"
        )
    host = parsed.host
    if not host:
        raise BlockedAddressError("URL has no host")
    if allow_private:
        return
    ip = _literal_ip(host)
    if ip is not None:
        reason = blocked_reason(ip)
        if reason:
            raise BlockedAddressError(f"{host} is {reason}")


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host`, in its order, without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    seen: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in seen:
            seen.append(address)
    return seen


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore backend that resolves, vets every address, then connects to a vetted IP.

    TLS is unaffected: httpcore passes the URL's host as `server_hostname` to `start_tls`, so
    SNI and certificate checks still use the name, not the IP we connected to.
    """

    def __init__(
        self,
        *,
        allow_private: bool,
        inner: httpcore.AsyncNetworkBackend | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._inner = inner or httpcore.AnyIOBackend()
        self._resolver = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self._allow_private:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        deadline = None if timeout is None else time.monotonic() + timeout
        addresses = await self._resolve(host, port, timeout)
        if not addresses:
            raise httpcore.ConnectError(f"{host} did not resolve to any address")
        # Any blocked answer taints the name: a rebinding resolver mixes public and private.
        for address in addresses:
            reason = blocked_reason(address)
            if reason:
                shown = host if host == address else f"{host} ({address})"
                raise BlockedAddressError(f"{shown} is {reason}")
        last_error: Exception | None = None
        for address in addresses:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            try:
                return await self._inner.connect_tcp(
                    address, port, remaining, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def _resolve(self, host: str, port: int, limit: float | None) -> list[str]:
        # Looked up at call time so tests can substitute the module-level resolver.
        resolver = self._resolver or resolve_host
        try:
            return await asyncio.wait_for(resolver(host, port), limit)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:  # socket.gaierror: unknown host, resolver down
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if not self._allow_private:
            raise BlockedAddressError("unix sockets are local")
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(
    *, allow_private: bool, limits: httpx.Limits | None = None, resolver: Resolver | None = None
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connection pool opens sockets only through GuardedBackend."""
    limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
    transport = httpx.AsyncHTTPTransport(retries=0, limits=limits)
    # httpx has no public hook for the network backend; replace the pool it built with an
    # equivalent one (same TLS context, limits, no retries) that uses the guarded backend.
    default_pool = transport._pool
    assert isinstance(default_pool, httpcore.AsyncConnectionPool)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=default_pool._ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        retries=0,
        network_backend=GuardedBackend(allow_private=allow_private, resolver=resolver),
    )
    return transport


def guarded_client(*, allow_private: bool, timeout: float = 30.0) -> httpx.AsyncClient:
    """The client for user-supplied URLs: SSRF-guarded, no redirects, no retries.

    `trust_env=False`: environment proxies would bypass the guarded pool, and ~/.netrc
    credentials must never be sent to a URL a workflow author chose.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
        follow_redirects=False,
        transport=guarded_transport(allow_private=allow_private),
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )
