"""`GET /api/v1/jobs/{job_id}` answered without FastAPI's routing and dependency machinery.

Polling a job is the gateway's most frequent request by far (every client asks every fraction
of a second), and for that one route FastAPI's per-request machinery (routing, resolving five
dependencies, validating the response model, the exception middleware) cost more CPU than the
answer itself. This middleware serves a job read itself, with the same code the route uses:
the same auth dependencies (`bearer_scheme`, `secret_header_scheme`, `authenticate`), the same
`job_service.get_job_view`, and the same serialization (the response model's JSON, as
FastAPI's own fast path writes it). It only ever answers 200: a request that fails auth, names
an unknown job or meets any error goes on to the normal route, which gives the usual answer
(its error body, status and headers), so every error path stays FastAPI's.
"""

from __future__ import annotations

import logging
import re

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api import job_service
from api.auth import authenticate, bearer_scheme, secret_header_scheme
from api.metrics import mark_route
from api.schemas import JobView

log = logging.getLogger(__name__)

JOB_VIEW = TypeAdapter(JobView)


class JobReadFastPath:
    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.route = f"{prefix}/jobs/{{job_id}}"
        self._path = re.compile(re.escape(prefix) + r"/jobs/([^/]+)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = self._path.fullmatch(scope["path"])
            if match is not None:
                body = await self._answer(scope, match.group(1))
                if body is not None:
                    mark_route(scope, self.route)
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 200,
                            "headers": [
                                (b"content-length", str(len(body)).encode()),
                                (b"content-type", b"application/json"),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, job_id: str) -> bytes | None:
        """The 200 body, or None to let the route answer (any refusal or error)."""
        app = scope.get("app")
        state = getattr(app, "state", None)
        if state is None or getattr(app, "dependency_overrides", None):
            return None  # a test replaced a dependency: only the route honours that
        try:
            request = Request(scope)
            caller = await authenticate(
                request, await bearer_scheme(request), await secret_header_scheme(request)
            )
            view = await job_service.get_job_view(
                job_id,
                settings=state.settings,
                engine=state.engine,
                temporal=state.temporal,
                caller=caller,
            )
            if caller.earlier_client:
                view = job_service.as_earlier_client_sees_it(view)
            return JOB_VIEW.dump_json(view, by_alias=True)
        except Exception:
            return None
