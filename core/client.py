"""An async Python client for the gateway's REST API (`/api/v1`), typed with its own models.

    async with LlmflowClient("http://localhost:8000", api_key="k1") as client:
        accepted = await client.submit("quickstart", {"topic": "durable execution"})
        job = await client.wait(accepted.job_id)          # a JobView once the job has ended
        async for event in client.events(accepted.job_id):  # or follow it live (SSE)
            print(event.event, event.json())

Every 4xx/5xx answer raises `LlmflowError`, carrying the API's `{error, message, detail}`
(for a 422, `detail` lists `{loc, msg, type}` and `.fields` the `loc`s). Network failures are
httpx's own exceptions (`httpx.TransportError`); `wait` rides them out until its timeout.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from api.fork_schemas import ForkAccepted, ForkList, ForkRequest, RunComparison
from api.schemas import CancelAccepted, JobAccepted, JobCreate, JobView, RerunAccepted
from core.contracts import TERMINAL_STATUSES

__all__ = [
    "JobCreate",
    "LlmflowClient",
    "LlmflowError",
    "ServerSentEvent",
    "WaitTimeout",
    "parse_sse",
]

API_PREFIX = "/api/v1"
# Answers worth polling through: the gateway or Temporal restarting, a proxy in between.
_TRANSIENT_STATUSES = frozenset({502, 503, 504})
_Model = TypeVar("_Model", bound=BaseModel)


class LlmflowError(Exception):
    """A 4xx/5xx answer: `error` is the API's short code (`JobNotFound`, `ValidationError`,
    `WorkflowNotFound`, `InvalidAPISecret`, `Conflict`, …), `message` one sentence, `detail`
    FastAPI's field (a string, or for a 422 the list of `{loc, msg, type}`)."""

    def __init__(
        self,
        status_code: int,
        error: str,
        message: str,
        detail: Any = None,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"HTTP {status_code} {error}: {message}")
        self.status_code = status_code
        self.error = error
        self.message = message
        self.detail = detail
        self.body = body
        self.headers = dict(headers or {})

    @property
    def fields(self) -> list[list[str | int]]:
        """The `loc` of every problem a 422 names, e.g. `["body", "input_data", "topic"]`."""
        if not isinstance(self.detail, list):
            return []
        return [list(p["loc"]) for p in self.detail if isinstance(p, dict) and "loc" in p]

    @classmethod
    def from_response(cls, response: httpx.Response) -> LlmflowError:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        if isinstance(body, dict) and "error" in body:
            return cls(
                response.status_code,
                str(body.get("error")),
                str(body.get("message") or body.get("detail") or ""),
                body.get("detail"),
                body=body,
                headers=response.headers,
            )
        # Not the gateway's shape (a proxy's error page, say): keep what there is.
        text = body if isinstance(body, str) else json.dumps(body)
        return cls(
            response.status_code,
            f"HTTP{response.status_code}",
            text[:500] or response.reason_phrase,
            body,
            body=body,
            headers=response.headers,
        )


class WaitTimeout(TimeoutError):
    """`wait` gave up before the job ended; `last` is the job as last seen (None if never)."""

    def __init__(self, job_id: str, seconds: float, last: JobView | None) -> None:
        status = last.status if last else "unknown"
        super().__init__(f"job {job_id} still {status} after {seconds:g} s")
        self.job_id = job_id
        self.last = last


@dataclass(frozen=True)
class ServerSentEvent:
    """One event of a `text/event-stream`: `event` is its type (`status`, `step`, `waiting`,
    `job`, …; `message` when unnamed), `data` its data lines joined with newlines."""

    event: str
    data: str
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class _SseParser:
    """The event-stream interpretation of the HTML standard (section 9.2.6), incrementally:
    lines end in CRLF, LF or CR; `:` starts a comment; a blank line dispatches the event."""

    def __init__(self) -> None:
        self._started = False
        self._pending = ""
        self._after_cr = False
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, text: str) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")  # one byte order mark may open the stream
        for char in text:
            if char == "\n" and self._after_cr:  # the LF of a CRLF already ended the line
                self._after_cr = False
                continue
            self._after_cr = char == "\r"
            if char in "\r\n":
                line, self._pending = self._pending, ""
                event = self._line(line)
                if event is not None:
                    events.append(event)
            else:
                self._pending += char
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry":
            if value.isdigit():
                self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        event_type, data = self._event, self._data
        self._event, self._data = "", []
        if not data:
            return None
        return ServerSentEvent(event_type or "message", "\n".join(data), self._id, self._retry)


def parse_sse(text: str) -> list[ServerSentEvent]:
    """Every complete event in `text` (an unterminated last event is not dispatched)."""
    return _SseParser().feed(text)


class LlmflowClient:
    """Async client of one gateway. Use it as an async context manager, or call `aclose()`.

    `api_key` is sent as `Authorization: Bearer <key>` (a key from the gateway's API_KEYS);
    pass `http` to bring your own `httpx.AsyncClient` (its base_url is then ignored).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        http: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._prefix = base_url.rstrip("/") + API_PREFIX
        self._headers = {"Accept": "application/json", **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout, transport=transport)

    async def __aenter__(self) -> LlmflowClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    # --- jobs ---------------------------------------------------------------------------------

    async def submit(
        self,
        workflow_name: str | JobCreate,
        input_data: Mapping[str, Any] | None = None,
        *,
        workflow_version: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        user_id: str | None = None,
        priority: int | None = None,
        username: str | None = None,
        action: str | None = None,
        debug_mode: bool | None = None,
        idempotency_key: str | None = None,
    ) -> JobAccepted:
        """`POST /jobs`: start a job (202). With `idempotency_key`, repeating the same request
        returns the same job. The gateway validates the body: a bad field is a 422 naming it."""
        if isinstance(workflow_name, JobCreate):
            body = workflow_name.model_dump(mode="json", exclude_unset=True)
        else:
            fields = {
                "workflow_name": workflow_name,
                "workflow_version": workflow_version,
                "input_data": dict(input_data or {}),
                "webhook_url": webhook_url,
                "webhook_secret": webhook_secret,
                "user_id": user_id,
                "priority": priority,
                "username": username,
                "action": action,
                "debug_mode": debug_mode,
            }
            body = {k: v for k, v in fields.items() if v is not None}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = await self._request("POST", "/jobs", json=body, headers=headers)
        return JobAccepted.model_validate(response.json())

    async def get(self, job_id: str) -> JobView:
        """`GET /jobs/{job_id}`: status, output or error, per-step records, progress."""
        return await self._model(JobView, "GET", f"/jobs/{_segment(job_id)}")

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = 300.0,  # noqa: ASYNC109 (polls; a deadline spans many requests)
        initial_interval: float = 0.25,
        max_interval: float = 5.0,
        backoff: float = 1.5,
    ) -> JobView:
        """Poll until the job ends (completed, failed, cancelled or timed_out) and return it.

        The interval grows from `initial_interval` by `backoff` up to `max_interval` (with a
        little jitter, so many waiters don't poll in step). 502/503/504 answers and network
        errors are retried; any other error answer raises `LlmflowError`. `WaitTimeout` after
        `timeout` seconds (None: wait forever). A failed job is returned, not raised: look at
        `.status` and `.error`.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        interval = initial_interval
        last: JobView | None = None
        while True:
            try:
                last = await self.get(job_id)
                if last.status in TERMINAL_STATUSES:
                    return last
            except LlmflowError as exc:
                if exc.status_code not in _TRANSIENT_STATUSES:
                    raise
            except httpx.TransportError:
                pass
            delay = interval * random.uniform(0.9, 1.1)
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    raise WaitTimeout(job_id, timeout or 0.0, last)
                delay = min(delay, left)
            await asyncio.sleep(delay)
            interval = min(interval * backoff, max_interval)

    async def events(self, job_id: str) -> AsyncIterator[ServerSentEvent]:
        """`GET /jobs/{job_id}/events`: the job's Server-Sent Events as they come (`status`,
        `step` started/finished, `waiting`, …), ending with `job` (the final JobView, see
        `JobView.model_validate(event.json())`), after which the stream closes."""
        url = f"{self._prefix}/jobs/{_segment(job_id)}/events"
        headers = {**self._headers, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
        # No read timeout: the server sends a comment every 15 s while nothing happens.
        timeout = httpx.Timeout(self._http.timeout.connect or 30.0, read=None)
        async with self._http.stream("GET", url, headers=headers, timeout=timeout) as response:
            if response.status_code >= 400:
                await response.aread()
                raise LlmflowError.from_response(response)
            parser = _SseParser()
            async for chunk in response.aiter_text():
                for event in parser.feed(chunk):
                    yield event

    async def cancel(self, job_id: str) -> CancelAccepted:
        """`POST /jobs/{job_id}/cancel` (202); the job ends `cancelled`. 409 if it had ended."""
        return await self._model(CancelAccepted, "POST", f"/jobs/{_segment(job_id)}/cancel")

    async def rerun(
        self, job_id: str, from_step: str | None = None, *, idempotency_key: str | None = None
    ) -> RerunAccepted:
        """`POST /jobs/{job_id}/rerun`: a new job with the same input and definition; with
        `from_step`, the steps before it reuse the outputs the first run recorded."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        body = {"from_step": from_step} if from_step else {}
        return await self._model(
            RerunAccepted, "POST", f"/jobs/{_segment(job_id)}/rerun", json=body, headers=headers
        )

    async def fork(
        self, job_id: str, body: ForkRequest | None = None, *, idempotency_key: str | None = None
    ) -> ForkAccepted:
        """`POST /jobs/{job_id}/fork`: a new job with edits (input patch, definition version,
        step overrides, given outputs); `fork.steps` says what it reuses and runs again."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        payload = (body or ForkRequest()).model_dump(mode="json", exclude_unset=True)
        return await self._model(
            ForkAccepted, "POST", f"/jobs/{_segment(job_id)}/fork", json=payload, headers=headers
        )

    async def forks(self, job_id: str) -> ForkList:
        """`GET /jobs/{job_id}/forks`: the jobs forked from it, oldest first."""
        return await self._model(ForkList, "GET", f"/jobs/{_segment(job_id)}/forks")

    async def compare(self, job_id: str, other_id: str) -> RunComparison:
        """`GET /jobs/{job_id}/compare/{other_id}`: the two runs step by step."""
        path = f"/jobs/{_segment(job_id)}/compare/{_segment(other_id)}"
        return await self._model(RunComparison, "GET", path)

    async def approve(
        self,
        job_id: str,
        step_path: str,
        approved: bool = True,
        *,
        comment: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`POST /jobs/{job_id}/approvals/{step_path}`: decide a waiting `approval` step
        (`approved=False` rejects). Returns the step's output
        `{approved, decided_by, comment, data, decided_at}`."""
        body: dict[str, Any] = {"approved": approved, "data": dict(data or {})}
        if comment is not None:
            body["comment"] = comment
        path = f"/jobs/{_segment(job_id)}/approvals/{_segment(step_path)}"
        response = await self._request("POST", path, json=body)
        result: dict[str, Any] = response.json()
        return result

    async def send_event(self, job_id: str, event: str, payload: Any = None) -> Any:
        """`POST /jobs/{job_id}/events/{event}`: the payload a `wait_for_event` step waits
        for. Returns the step's output."""
        path = f"/jobs/{_segment(job_id)}/events/{_segment(event)}"
        response = await self._request("POST", path, json=payload)
        return response.json()

    # --- plumbing -----------------------------------------------------------------------------

    async def _model(self, model: type[_Model], method: str, path: str, **kwargs: Any) -> _Model:
        response = await self._request(method, path, **kwargs)
        return model.model_validate(response.json())

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        response = await self._http.request(
            method,
            self._prefix + path,
            json=json,
            headers={**self._headers, **(headers or {})},
        )
        if response.status_code >= 400:
            raise LlmflowError.from_response(response)
        return response


def _segment(value: str) -> str:
    """One path segment: `/`, `#`, `?` and the like are escaped (a loop's `#` becomes %23)."""
    return quote(value, safe="")
