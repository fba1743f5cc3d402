"""A real HTTP server on 127.0.0.1 for tests: routes answer with canned or computed responses.

Outside services (LLM providers, WeatherAPI, Google Places, webhook receivers) are faked at the
wire level so the project's real httpx client code runs against them. Every request is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list → JSON; str/bytes sent as is
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # A streamed body (chunked transfer encoding): (pause before it, bytes) per piece. With
    # `drop`, the connection closes after the pieces without ending the body, as a crashed
    # or cut-off server's would.
    stream: list[tuple[float, bytes]] | None = None
    drop: bool = False

    def encode(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            payload = self.body
        elif isinstance(self.body, str):
            payload = self.body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            payload = json.dumps(self.body).encode()
            headers.setdefault("Content-Type", "application/json")
        return payload, headers


Handler = Callable[[Request], Response]


class FakeHTTPServer:
    """`server.route("POST", "/v1/chat/completions", handler_or_response)`; `server.url`."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._routes: dict[tuple[str, str], Handler | Response | list[Response]] = {}
        self._lock = threading.Lock()
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; without this, Nagle + delayed ACK
            # add ~40 ms to every loopback response.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(
                    method=self.command,
                    path=parts.path,
                    query={
                        k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()
                    },
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with outer._lock:
                    outer.requests.append(req)
                resp = outer._respond(req)
                if resp.delay:
                    time.sleep(resp.delay)
                if resp.stream is not None:
                    self._stream(resp)
                    return
                payload, headers = resp.encode()
                try:
                    self.send_response(resp.status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _stream(self, resp: Response) -> None:
                try:
                    self.send_response(resp.status)
                    for k, v in resp.headers.items():
                        self.send_header(k, v)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for pause, piece in resp.stream or []:
                        if pause:
                            time.sleep(pause)
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    if resp.drop:
                        self.close_connection = True
                        return
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def route(self, method: str, path: str, answer: Handler | Response | list[Response]) -> None:
        """A list of Responses is consumed in order; the last one repeats."""
        with self._lock:
            self._routes[(method.upper(), path)] = (
                list(answer) if isinstance(answer, list) else answer
            )

    def requests_to(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._routes.clear()

    def _respond(self, req: Request) -> Response:
        with self._lock:
            answer = self._routes.get((req.method, req.path))
            if isinstance(answer, list):
                resp = answer.pop(0) if len(answer) > 1 else answer[0]
                return resp
        if answer is None:
            return Response(404, {"error": f"no route for {req.method} {req.path}"})
        if isinstance(answer, Response):
            return answer
        return answer(req)

    def start(self) -> FakeHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
