"""transform steps: pure functions run inside the workflow, no activity round trip."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

from worker.steps.base import Runner, StepAt, StepFailed, StepOutcome

with workflow.unsafe.imports_passed_through():
    from core.errors import ErrorContext, ErrorType
    from workflow_defs.transforms import TransformError, apply_transform
    from workflow_defs.transforms.lists import SCOPE_KEY as FILTER_SCOPE_KEY


async def run(runner: Runner, step: Any, at: StepAt) -> StepOutcome:
    cfg = step.config
    config = dict(cfg.config)
    config.update(at.resolver.resolve(cfg.resolvable_config()))
    if "source" in cfg.config:
        data = config["source"]
    elif cfg.input is not None:
        data = at.resolver.resolve(cfg.input)
    else:
        data = at.scope.namespace
    if cfg.operation == "filter":
        config[FILTER_SCOPE_KEY] = at.scope.namespace
    try:
        return StepOutcome(output=apply_transform(cfg.operation, data, config))
    except TransformError as exc:
        raise StepFailed(
            ErrorContext.of(
                ErrorType.TRANSFORM_ERROR,
                str(exc),
                retryable=False,
                step_id=at.path,
                attempt=1,
                details={"operation": cfg.operation, "config": {"field": exc.field}},
            )
        ) from None
