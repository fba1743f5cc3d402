"""The `llm_call` activity: one llm step = provider call(s) + JSON repair loop + fallbacks.

Within one Temporal attempt: the primary provider/model is called; a JSON reply that doesn't
parse or validate is re-asked up to `max_repairs` times; a provider failure that another
provider might not have (retryable, auth, config, not found) moves on to the next fallback.
Everything else is Temporal's job: this code never retries a failed call itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.llm.chat import ChatMessage, ChatProvider, ChatRequest, ChatResult
from activities.llm.json_output import JsonReplyError, parse_and_validate, repair_message
from activities.llm.mock import MockProvider
from activities.llm.models import LlmCallInput
from activities.llm.pricing import cost_usd
from activities.llm.providers import MissingProviderSetting, resolve_provider
from activities.llm.response_format import ResponseFormat, parse_response_format
from activities.resilience import Resilience
from core import tracing
from core.contracts import LLM_CALL
from core.errors import ErrorContext, ErrorType
from core.llm_stream import DEGRADED_WARNING, Delta, DeltaSink
from core.redaction import redact_text
from core.settings import Settings
from core.step_outputs import LlmCallOutput, LlmUsage

# Failures a different provider/model may not share; a 400/422 or an invalid reply would.
_FALLBACK_TYPES = {ErrorType.AUTH_ERROR, ErrorType.CONFIG_ERROR, ErrorType.UPSTREAM_NOT_FOUND}
_TRUNCATED_REASONS = {"length", "max_tokens"}


def falls_back(err: ApplicationError) -> bool:
    return not err.non_retryable or err.type in _FALLBACK_TYPES


@dataclass
class _Tally:
    """Usage, cost and warnings summed over every call made in this attempt."""

    usage: LlmUsage = field(default_factory=LlmUsage)
    cost: float = 0.0
    warnings: list[str] = field(default_factory=list)
    calls: int = 0  # provider calls so far; numbers a streamed call's deltas

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def add(self, provider: str, model: str, result: ChatResult) -> None:
        self.usage = self.usage + result.usage
        for note in result.warnings:
            self.warn(note)
        if provider == "mock":
            return
        cost, warning = cost_usd(result.usage, model, result.model)
        self.cost = round(self.cost + cost, 8)
        if warning:
            self.warn(warning)


@asynccontextmanager
async def _heartbeating(interval: float, details: Any) -> AsyncIterator[None]:
    # Keeps the activity visibly alive during a long generation and lets cancellation in.
    async def beat() -> None:
        while True:
            await asyncio.sleep(interval)
            activity.heartbeat(details)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait([task])


class LlmActivities:
    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient,
        *,
        heartbeat_interval_seconds: float = 5.0,
        resilience: Resilience | None = None,
        deltas: DeltaSink | None = None,
    ) -> None:
        self._settings = settings
        self._http = http
        self._heartbeat_interval = heartbeat_interval_seconds
        # None: no breaker (unit tests); the worker passes its shared one.
        self._resilience = resilience
        # None (no Redis): a streamed step's text arrives whole, with a warning.
        self._deltas = deltas

    @activity.defn(name=LLM_CALL)
    async def llm_call(self, input: LlmCallInput) -> LlmCallOutput:
        started = time.monotonic()
        tracing.step(input.step_id, "llm")  # span attributes; no-op unless tracing is on
        fmt = parse_response_format(input.response_format)
        tally = _Tally()
        async with _heartbeating(self._heartbeat_interval, {"step_id": input.step_id}):
            provider, model, result, data = await self._call_with_fallbacks(input, fmt, tally)
        tracing.llm_result(input, provider, model, tally.usage, result)
        return LlmCallOutput(
            content=result.content,
            data=data,
            model=result.model or model,
            provider=provider,
            usage=tally.usage,
            cost_usd=tally.cost,
            duration_ms=int((time.monotonic() - started) * 1000),
            finish_reason=result.finish_reason,
            attempt=activity.info().attempt,
            warnings=tally.warnings,
        )

    async def _call_with_fallbacks(
        self, input: LlmCallInput, fmt: ResponseFormat, tally: _Tally
    ) -> tuple[str, str, ChatResult, Any]:
        primary = input.provider or self._settings.llm_default_provider
        candidates = [(primary, input.model)] + [(f.provider, f.model) for f in input.fallbacks]
        missing: list[MissingProviderSetting] = []
        last_error: ApplicationError | None = None
        for index, (name, model) in enumerate(candidates):
            label = f"{name}/{model}"
            try:
                provider = resolve_provider(
                    name,
                    self._settings,
                    self._http,
                    base_url=input.base_url,
                    warnings=tally.warnings,
                )
                result, data = await self._call_with_repairs(provider, model, input, fmt, tally)
                return provider.name, model, result, data
            except MissingProviderSetting as exc:
                if self._settings.environment == "development":
                    missing.append(exc)
                    tally.warn(f"{label} skipped: {exc.env_var} is not set")
                    continue
                err = exc.to_application_error()
            except ApplicationError as exc:
                err = exc
            if not falls_back(err):
                raise err
            last_error = err
            if index + 1 < len(candidates):
                note = f"{label} failed ({err.type}): {redact_text(err.message)}; trying the next fallback"
                tally.warn(note)
                activity.logger.warning("llm step %s: %s", input.step_id, note)
        if last_error is None and missing:
            # Development only, and never silent: the output says provider "mock" and why.
            env_vars = ", ".join(dict.fromkeys(m.env_var for m in missing))
            note = (
                f"{env_vars} not set: answered by the mock provider instead of {primary} "
                "(development only; production fails with CONFIG_ERROR)"
            )
            tally.warn(note)
            activity.logger.warning("llm step %s: %s", input.step_id, note)
            mock = MockProvider()
            result, data = await self._call_with_repairs(mock, input.model, input, fmt, tally)
            return mock.name, input.model, result, data
        assert last_error is not None  # candidates is never empty
        raise last_error

    async def _complete(self, provider: ChatProvider, request: ChatRequest) -> ChatResult:
        tracing.llm_call(provider.name, request.model)
        # A breaker per provider: an open one fails fast (retryable), so the fallbacks run.
        if self._resilience is None or provider.name == "mock":
            return await provider.complete(request)
        async with self._resilience.guard(
            f"llm:{provider.name}",
            details={"provider": provider.name, "model": request.model},
        ):
            return await provider.complete(request)

    def _delta_publisher(
        self, input: LlmCallInput, tally: _Tally
    ) -> Callable[[str], Awaitable[None]] | None:
        if input.stream_to is None or input.job_id is None:
            return None
        if self._deltas is None:
            tally.warn(DEGRADED_WARNING)
            return None
        sink, job_id = self._deltas, input.job_id
        delta = Delta(input.stream_to, "", activity.info().attempt, tally.calls)

        async def publish(text: str) -> None:
            if not await sink.publish(job_id, replace(delta, text=text)):
                tally.warn("stream: Redis refused the deltas; the text arrives whole at the end")

        return publish

    async def _call_with_repairs(
        self,
        provider: ChatProvider,
        model: str,
        input: LlmCallInput,
        fmt: ResponseFormat,
        tally: _Tally,
    ) -> tuple[ChatResult, Any]:
        latency = input.mock_latency_ms
        if latency is None:
            latency = self._settings.llm_mock_latency_ms
        messages = [ChatMessage("user", input.prompt)]
        errors: list[str] = []
        calls = input.max_repairs + 1
        for call in range(calls):
            tally.calls += 1
            request = ChatRequest(
                on_delta=self._delta_publisher(input, tally),
                model=model,
                messages=list(messages),
                system=input.system_prompt,
                response_format=fmt,
                temperature=input.temperature,
                max_tokens=input.max_tokens,
                top_p=input.top_p,
                timeout_seconds=input.request_timeout_seconds,
                mock_response=input.mock_response,
                mock_latency_ms=latency,
            )
            result = await self._complete(provider, request)
            tally.add(provider.name, model, result)
            if not fmt.is_json:
                return result, None
            try:
                data = parse_and_validate(result.content, fmt.schema)
            except JsonReplyError as exc:
                errors = exc.errors
                truncated = result.finish_reason in _TRUNCATED_REASONS
                messages += [
                    # Providers reject empty assistant turns.
                    ChatMessage("assistant", result.content or "(empty reply)"),
                    ChatMessage("user", repair_message(errors, truncated=truncated)),
                ]
                continue
            if call:
                tally.warn(f"JSON reply repaired after {call} invalid attempt(s)")
            return result, data
        raise ErrorContext.of(
            ErrorType.OUTPUT_INVALID,
            f"{provider.name}/{model} gave no valid JSON for the step's response_format in "
            f"{calls} call(s): " + "; ".join(errors),
            retryable=False,
            details={
                "provider": provider.name,
                "model": model,
                "suggestions": [
                    "make the prompt state the expected JSON shape",
                    "raise max_repairs or max_tokens, or relax the schema",
                ],
            },
        ).to_application_error()
