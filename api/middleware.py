"""ASGI middleware of the gateway."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class JsonByDefault:
    """Treat form-encoded or untyped bodies as JSON.

    Every endpoint takes JSON, and `curl -d '{…}'` sends it labelled
    application/x-www-form-urlencoded; reading it as JSON is what the caller meant. A body that
    is not JSON still gets a clear 400.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            ctype = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
            if not ctype or ctype.startswith(b"application/x-www-form-urlencoded"):
                scope = dict(scope)
                scope["headers"] = [*headers, (b"content-type", b"application/json")]
        await self.app(scope, receive, send)
