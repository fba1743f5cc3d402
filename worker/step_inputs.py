"""Turn one DSL step plus the run's namespace into an activity call (pure; runs in the workflow).

Each builder resolves the step's references, renders prompts from the definition snapshot and
returns (activity name, input model, result type). No I/O here: the snapshot already holds the
prompt texts, and secrets stay in the worker's environment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

from activities.external_api_models import ExternalApiInput
from activities.http_step_models import HttpRequestInput
from activities.llm.models import LlmCallInput, LlmFallback
from activities.webhook_step_models import WebhookSendInput
from core.contracts import (
    EXTERNAL_API_CALL,
    HTTP_REQUEST,
    LLM_CALL,
    WEBHOOK_SEND,
    ResolvedDefinition,
)
from core.step_outputs import ExternalApiOutput, HttpRequestOutput, LlmCallOutput, WebhookSendOutput
from workflow_defs.prompts import render_prompt
from workflow_defs.references import Resolver
from workflow_defs.schema import (
    ExternalApiStep,
    HttpStep,
    LlmStep,
    RetrySpec,
    WebhookStep,
    WorkflowDefinition,
)

DEFAULT_TIMEOUTS = {"llm": 120.0, "external_api": 30.0, "http": 30.0, "webhook": 30.0}
# Used for `error_mode: fail|retry` when a step gives no `retry` block.
DEFAULT_RETRY = RetrySpec(max_retries=3, initial_delay=1.0, max_delay=60.0, exponential_base=2.0)


@dataclass
class ActivityCall:
    name: str
    arg: Any
    result_type: type
    start_to_close: timedelta
    retry_policy: RetryPolicy
    heartbeat_timeout: timedelta | None = None


def retry_policy(spec: RetrySpec | None) -> RetryPolicy:
    spec = spec or DEFAULT_RETRY
    return RetryPolicy(
        initial_interval=timedelta(seconds=spec.initial_delay),
        maximum_interval=timedelta(seconds=max(spec.max_delay, spec.initial_delay)),
        backoff_coefficient=spec.exponential_base,
        maximum_attempts=spec.max_retries + 1,
        non_retryable_error_types=list(spec.non_retryable_errors) or None,
    )


def _timeout(step: Any, config_timeout: float | None) -> timedelta:
    seconds = step.timeout_seconds or config_timeout or DEFAULT_TIMEOUTS[step.type]
    return timedelta(seconds=seconds)


def build_activity_call(
    step: Any,
    *,
    job_id: str,
    snapshot: ResolvedDefinition,
    resolver: Resolver,
    path: str | None = None,
) -> ActivityCall:
    """`path`: where the step sits in the tree (`enrich[3].summarize`); defaults to its id."""
    builder = BUILDERS.get(step.type)
    if builder is None:
        raise TypeError(f"step type {step.type!r} does not run as an activity")
    call = builder(step, job_id, snapshot, resolver, retry_policy(step.retry))
    if getattr(step.config, "stream", False):
        call.arg = call.arg.model_copy(update={"stream_to": path or step.id})
    return call


def _external_api_call(
    step: ExternalApiStep,
    job_id: str,
    snapshot: ResolvedDefinition,
    resolver: Resolver,
    policy: RetryPolicy,
) -> ActivityCall:
    cfg = step.config
    timeout = _timeout(step, cfg.timeout)
    arg = ExternalApiInput(
        step_id=step.id,
        service=cfg.service,
        operation=cfg.operation,
        params=resolver.resolve(cfg.parameters),
        cache_ttl=cfg.cache_ttl,
        timeout_seconds=timeout.total_seconds(),
    )
    return ActivityCall(EXTERNAL_API_CALL, arg, ExternalApiOutput, timeout, policy)


def _http_call(
    step: HttpStep,
    job_id: str,
    snapshot: ResolvedDefinition,
    resolver: Resolver,
    policy: RetryPolicy,
) -> ActivityCall:
    cfg = step.config
    timeout = _timeout(step, cfg.timeout)
    expected = cfg.expected_status
    arg = HttpRequestInput(
        step_id=step.id,
        method=cfg.method,
        url=str(resolver.resolve(cfg.url)),
        headers={k: str(v) for k, v in resolver.resolve(cfg.headers).items()},
        query=resolver.resolve(cfg.query),
        json_body=resolver.resolve(cfg.json_body),
        expected_status=[expected] if isinstance(expected, int) else expected,
        timeout_seconds=timeout.total_seconds(),
    )
    return ActivityCall(HTTP_REQUEST, arg, HttpRequestOutput, timeout, policy)


def _webhook_call(
    step: WebhookStep,
    job_id: str,
    snapshot: ResolvedDefinition,
    resolver: Resolver,
    policy: RetryPolicy,
) -> ActivityCall:
    cfg = step.config
    timeout = _timeout(step, cfg.timeout)
    arg = WebhookSendInput(
        step_id=step.id,
        job_id=job_id,
        url=str(resolver.resolve(cfg.url)),
        payload=resolver.resolve(cfg.payload),
        event=cfg.event,
        delivery_id=f"{job_id}:{step.id}",
        secret_ref="env",
        timeout_seconds=timeout.total_seconds(),
    )
    return ActivityCall(WEBHOOK_SEND, arg, WebhookSendOutput, timeout, policy)


def _llm_call(
    step: LlmStep,
    job_id: str,
    snapshot: ResolvedDefinition,
    resolver: Resolver,
    policy: RetryPolicy,
) -> ActivityCall:
    cfg = step.config
    variables = resolver.resolve(cfg.variables)
    template = snapshot.prompts[cfg.prompt_template] if cfg.prompt_template else cfg.prompt_text
    system = (
        snapshot.prompts[cfg.system_prompt_template]
        if cfg.system_prompt_template
        else cfg.system_prompt
    )
    timeout = _timeout(step, cfg.timeout)
    arg = LlmCallInput(
        step_id=step.id,
        job_id=job_id,
        workflow=snapshot.name,
        provider=cfg.provider,
        model=cfg.model,
        prompt=render_prompt(template or "", variables, resolver),
        system_prompt=render_prompt(system, variables, resolver) if system else None,
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        top_p=cfg.top_p,
        response_format=cfg.response_format,
        fallbacks=[LlmFallback(provider=f.provider, model=f.model) for f in cfg.fallbacks],
        base_url=cfg.base_url,
        max_repairs=cfg.max_repairs,
        request_timeout_seconds=timeout.total_seconds(),
        # A template like the prompt: an offline run's sample reply can follow the input.
        mock_response=(
            render_prompt(cfg.mock_response, variables, resolver) if cfg.mock_response else None
        ),
        mock_latency_ms=cfg.mock_latency_ms,
    )
    # Heartbeats let Temporal notice a dead worker long before a slow call's timeout.
    return ActivityCall(
        LLM_CALL, arg, LlmCallOutput, timeout, policy, heartbeat_timeout=timedelta(seconds=30)
    )


# One builder per activity step type; a new one is a function above plus its line here.
BUILDERS: dict[str, Callable[..., ActivityCall]] = {
    "llm": _llm_call,
    "external_api": _external_api_call,
    "http": _http_call,
    "webhook": _webhook_call,
}


def step_view(
    record_output: Any, status: str, error: Any, outputs: list[str] | None, content: Any
) -> dict[str, Any]:
    """What `${steps.<id>…}` sees: output/status/error, the output's keys one level up, and
    the `outputs` names (for llm steps they name the text)."""
    view: dict[str, Any] = {}
    if isinstance(record_output, dict):
        view.update(record_output)
    for name in outputs or ():
        view[name] = content
    view.update({"output": record_output, "status": status, "error": error})
    return view


def definition_of(snapshot: ResolvedDefinition) -> WorkflowDefinition:
    return WorkflowDefinition.model_validate(snapshot.definition)
