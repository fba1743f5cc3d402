"""A small HTTP/1.1 client for load generation: keep-alive connections, Content-Length bodies.

The benchmarks' clients stand for callers on other machines, yet they run on the same two cores
as the gateway; httpx spends ~1-2 ms of Python per request, which at a few hundred polls a
second takes a large share of the machine from what is measured. This client sends exactly
what a plain client sends (method, path, Host, Content-Type, Content-Length, body) and reads
the status, headers and body, at a fraction of that cost. Only what the gateway answers is
supported: no chunked bodies, no redirects, no TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Reply:
    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


class ProtocolError(RuntimeError):
    pass


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpClient:
    """`await client.get(path)`, `await client.post(path, json=...)`; idle connections are
    reused (one request at a time on each), new ones opened as concurrency needs."""

    def __init__(self, base_url: str, *, timeout: float = 60, keepalive_expiry: float = 5) -> None:
        parts = urlsplit(base_url)
        assert parts.scheme == "http" and parts.hostname and parts.port, base_url
        self.host, self.port = parts.hostname, parts.port
        self.timeout = timeout
        # Like httpx: a connection idle longer than this is closed, not reused (the server may
        # be closing it at that very moment, and a POST on it could not be resent).
        self.keepalive_expiry = keepalive_expiry
        self._idle: list[tuple[Conn, float]] = []
        self._host_header = f"Host: {self.host}:{self.port}\r\n".encode()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for (_, writer), _ in idle:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return await self.request("GET", path, headers=headers)

    async def post(
        self, path: str, json: Any = None, headers: dict[str, str] | None = None
    ) -> Reply:
        return await self.request("POST", path, body=_dumps(json), headers=headers)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        head = [f"{method} {path} HTTP/1.1\r\n".encode(), self._host_header]
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}\r\n".encode())
        if body is not None:
            head.append(b"Content-Type: application/json\r\n")
            head.append(f"Content-Length: {len(body)}\r\n".encode())
        head.append(b"\r\n")
        message = b"".join(head) + (body or b"")
        conn = self._take_idle()
        reused = conn is not None
        if conn is None:
            conn = await self._connect()
        try:
            reply, keep = await asyncio.wait_for(self._exchange(conn, message), self.timeout)
        except (ConnectionError, asyncio.IncompleteReadError, ProtocolError):
            conn[1].close()
            if not reused or method != "GET":
                raise
            # The server closed an idle connection as we reused it: a GET is safe to resend.
            conn = await self._connect()
            reply, keep = await asyncio.wait_for(self._exchange(conn, message), self.timeout)
        except BaseException:
            conn[1].close()
            raise
        if keep:
            self._idle.append((conn, time.monotonic()))
        else:
            conn[1].close()
        return reply

    def _take_idle(self) -> Conn | None:
        now = time.monotonic()
        while self._idle:
            conn, since = self._idle.pop()
            if now - since <= self.keepalive_expiry:
                return conn
            conn[1].close()
        return None

    async def _connect(self) -> Conn:
        return await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)

    @staticmethod
    async def _exchange(conn: Conn, message: bytes) -> tuple[Reply, bool]:
        reader, writer = conn
        writer.write(message)
        status_line = await reader.readline()
        if not status_line:
            raise ProtocolError("connection closed before a response")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ProtocolError(f"bad status line {status_line[:80]!r}")
        headers: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", ""):
            raise ProtocolError("chunked bodies are not supported")
        length = int(headers.get("content-length", "0"))
        content = await reader.readexactly(length) if length else b""
        keep = headers.get("connection", "").lower() != "close"
        return Reply(int(parts[1]), headers, content), keep


def _dumps(value: Any) -> bytes | None:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":")).encode()
