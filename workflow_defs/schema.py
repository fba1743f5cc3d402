"""Pydantic models of a workflow definition: the DSL's single source of truth.

Compatible with the earlier service's files: aliases (`timeout`, `outputs`, `method`,
`parameters`/`params`/`config`, `error_mode` inside `config`) are normalised into one canonical
field each, so `model_dump()` of a loaded definition round-trips through `model_validate()`.
Unknown fields are kept (extra="allow") and reported as warnings by the loader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.budget import BudgetSpec
from core.payload_limits import STEP_OUTPUT_CEILING

if TYPE_CHECKING:
    from workflow_defs.step_checks import StepChecks

STEP_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
ErrorMode = Literal["fail", "continue", "retry"]
InputType = Literal["string", "number", "integer", "boolean", "array", "object", "any"]
_TYPE_ALIASES = {
    "str": "string",
    "text": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "list": "array",
    "dict": "object",
    "json": "any",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


def _move_alias(data: Any, canonical: str, *aliases: str) -> Any:
    """Copy the first alias present into `canonical` (when absent), dropping the aliases."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for alias in aliases:
        if alias in data:
            value = data.pop(alias)
            data.setdefault(canonical, value)
    return data


class InputSpec(_Model):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    type: InputType = "any"
    required: bool = False
    default: Any = None
    description: str | None = None
    enum: list[Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _type_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("type"), str):
            data = {**data, "type": _TYPE_ALIASES.get(data["type"].lower(), data["type"].lower())}
        return data


class RetrySpec(_Model):
    max_retries: int = Field(default=3, ge=0, le=100)
    initial_delay: float = Field(default=1.0, gt=0, le=3600)
    max_delay: float = Field(default=60.0, gt=0, le=86400)
    exponential_base: float = Field(default=2.0, ge=1.0, le=10.0)
    non_retryable_errors: list[str] = Field(default_factory=list)


class LlmFallbackSpec(_Model):
    provider: str
    model: str


class LlmConfig(_Model):
    model: str = Field(min_length=1)
    provider: Literal["openrouter", "openai", "anthropic", "openai_compatible", "mock"] | None = (
        None
    )
    base_url: str | None = None
    prompt_template: str | None = None
    prompt_text: str | None = None
    system_prompt: str | None = None
    system_prompt_template: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    top_p: float | None = Field(default=None, ge=0, le=1)
    timeout: float | None = Field(default=None, gt=0, le=3600)
    response_format: Literal["text", "json"] | dict[str, Any] | None = None
    fallbacks: list[LlmFallbackSpec] = Field(default_factory=list)
    max_repairs: int = Field(default=2, ge=0, le=5)
    mock_response: str | None = None
    mock_latency_ms: int | None = Field(default=None, ge=0, le=600_000)
    # Stream the reply: the job's event stream carries the text as it arrives (llm.delta).
    stream: bool = False
    error_mode: ErrorMode | None = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        return _move_alias(data, "prompt_text", "prompt")

    @model_validator(mode="after")
    def _one_prompt(self) -> LlmConfig:
        if (self.prompt_template is None) == (self.prompt_text is None):
            raise ValueError("give exactly one of prompt_template or prompt_text")
        if self.system_prompt is not None and self.system_prompt_template is not None:
            raise ValueError("give at most one of system_prompt or system_prompt_template")
        if self.provider == "openai_compatible" and not self.base_url:
            # The worker may still have OPENAI_COMPATIBLE_BASE_URL; the activity reports it if not.
            pass
        return self


class ExternalApiConfig(_Model):
    service: str = Field(min_length=1)
    operation: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    cache_ttl: int | None = Field(default=None, ge=0)
    timeout: float | None = Field(default=None, gt=0, le=3600)
    error_mode: ErrorMode | None = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        data = _move_alias(data, "operation", "method")
        return _move_alias(data, "parameters", "params", "config")


# Transform config keys that hold their own template/condition language, not references.
TRANSFORM_UNRESOLVED_KEYS = frozenset({"template", "condition", "expression"})


class TransformConfig(_Model):
    operation: str = Field(min_length=1)
    input: Any = None
    config: dict[str, Any] = Field(default_factory=dict)
    error_mode: ErrorMode | None = None

    def resolvable_config(self) -> dict[str, Any]:
        """The part of `config` whose `${…}` are resolved before the transform runs."""
        return {k: v for k, v in self.config.items() if k not in TRANSFORM_UNRESOLVED_KEYS}


class HttpConfig(_Model):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    url: str = Field(min_length=1)
    headers: dict[str, Any] = Field(default_factory=dict)
    query: dict[str, Any] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    expected_status: int | list[int] | None = None
    timeout: float | None = Field(default=None, gt=0, le=3600)
    error_mode: ErrorMode | None = None

    @model_validator(mode="before")
    @classmethod
    def _upper(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("method"), str):
            data = {**data, "method": data["method"].upper()}
        return data


class WebhookConfig(_Model):
    url: str = Field(min_length=1)
    payload: Any = None
    event: str = "workflow.step"
    timeout: float | None = Field(default=None, gt=0, le=3600)
    error_mode: ErrorMode | None = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        return _move_alias(data, "payload", "json", "body")


@dataclass(frozen=True)
class BlockSpec:
    """One block of steps inside a control step."""

    key: str  # JSON path from the step: "config.steps", "config.branches.weather", …
    steps: list[Any]
    label: str = ""  # parallel branch name / switch case name, used in record paths
    variables: tuple[str, ...] = ()  # reference roots the block adds (foreach item/index)


class _StepBase(_Model):
    id: str = Field(pattern=STEP_ID_PATTERN, max_length=100)
    error_mode: ErrorMode | None = None
    outputs: list[str] | None = None
    display_name: str | None = None
    description: str | None = None
    when: str | None = None
    retry: RetrySpec | None = None
    timeout_seconds: float | None = Field(default=None, gt=0, le=86400)
    default: Any = None
    # Bound on the step's output as stored in Temporal history (default 256 KiB).
    max_output_bytes: int | None = Field(default=None, ge=1, le=STEP_OUTPUT_CEILING)

    @model_validator(mode="before")
    @classmethod
    def _outputs_str(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("outputs"), str):
            data = {**data, "outputs": [data["outputs"]]}
        return data

    def blocks(self) -> list[BlockSpec]:
        """The blocks of steps this step holds (none for a leaf step)."""
        return []

    def check(self, ctx: StepChecks) -> None:
        """Checks pydantic can't do alone (references, prompts, services), reported through
        `ctx`. A leaf step's whole config may hold references; a control step overrides this
        (its blocks are checked step by step, in their own scope)."""
        config = getattr(self, "config", None)
        if isinstance(config, BaseModel):
            ctx.refs(config.model_dump(by_alias=True), "config")


class LlmStep(_StepBase):
    type: Literal["llm"]
    config: LlmConfig
    budget: BudgetSpec | None = None
    # A call that could cross a budget is not made: fail (None), call the fallbacks that fit,
    # cheapest first, or skip the step (null output, a warning).
    on_budget: Literal["fail", "fallback", "skip"] | None = None
    # The worst case of one call of a model the price table does not know.
    max_cost_usd_per_call: float | None = Field(default=None, gt=0, le=1_000_000)

    def check(self, ctx: StepChecks) -> None:
        cfg = self.config
        ctx.refs(cfg.variables, "config.variables")
        for field in ("prompt_template", "system_prompt_template"):
            relative = getattr(cfg, field)
            if relative is not None:
                ctx.prompt("", f"config.{field}", cfg.variables, file=relative)
        for field in ("prompt_text", "system_prompt", "mock_response"):
            text = getattr(cfg, field)
            if text is not None:
                ctx.prompt(text, f"config.{field}", cfg.variables)
        if self.on_budget == "fallback" and not cfg.fallbacks:
            ctx.error("on_budget", 'on_budget "fallback" needs config.fallbacks to choose from')


class ExternalApiStep(_StepBase):
    type: Literal["external_api"]
    config: ExternalApiConfig

    def check(self, ctx: StepChecks) -> None:
        ctx.service(self.config.service, self.config.operation, "config")
        ctx.refs(self.config.parameters, "config.parameters")


class TransformStep(_StepBase):
    type: Literal["transform"]
    config: TransformConfig

    def check(self, ctx: StepChecks) -> None:
        ctx.transform(self.config.operation, self.config.config, "config")
        ctx.refs(self.config.input, "config.input")
        ctx.refs(self.config.resolvable_config(), "config.config")


class HttpStep(_StepBase):
    type: Literal["http"]
    config: HttpConfig


class WebhookStep(_StepBase):
    type: Literal["webhook"]
    config: WebhookConfig


# --- control flow: steps that hold blocks of steps ----------------------------------------------

BLOCK_NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
Block = Annotated[list["Step"], Field(min_length=1)]


class ParallelConfig(_Model):
    branches: dict[str, Block] = Field(min_length=1)
    # The first failing branch cancels the others (Step Functions' Parallel does the same).
    fail_fast: bool = True
    # any: the first branch to complete wins and the others are cancelled.
    join: Literal["all", "any"] = "all"
    error_mode: ErrorMode | None = None

    @model_validator(mode="after")
    def _branch_names(self) -> ParallelConfig:
        bad = [name for name in self.branches if not _matches(BLOCK_NAME_PATTERN, name)]
        if bad:
            raise ValueError(f"branch names use letters, digits, _ and -: {', '.join(bad)}")
        return self


class ForeachConfig(_Model):
    items: Any
    as_: str = Field(default="item", alias="as", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    index_as: str = Field(default="index", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    steps: Block
    # An int, or a reference resolving to one; 1 runs the items one after another.
    max_concurrency: int | str = 4
    # A count, or a percentage of the items ("10%").
    tolerated_failures: int | str = 0
    on_item_error: Literal["fail", "null", "drop"] = "fail"
    output: Any = None
    # Past 100 items, items run in child workflows of this many (one at a time in each).
    batch_size: int = Field(default=50, ge=1, le=500)
    error_mode: ErrorMode | None = None

    @model_validator(mode="after")
    def _bounds(self) -> ForeachConfig:
        if isinstance(self.max_concurrency, int) and not 1 <= self.max_concurrency <= 100:
            raise ValueError("max_concurrency is 1 to 100")
        if isinstance(self.max_concurrency, str) and "${" not in self.max_concurrency:
            raise ValueError("max_concurrency is a number or a ${reference} to one")
        tolerated = self.tolerated_failures
        if isinstance(tolerated, int) and tolerated < 0:
            raise ValueError("tolerated_failures is a count >= 0 or a percentage like '10%'")
        if isinstance(tolerated, str) and parse_tolerance(tolerated) is None:
            raise ValueError("tolerated_failures is a count >= 0 or a percentage like '10%'")
        if self.as_ == self.index_as:
            raise ValueError("as and index_as must differ")
        if self.as_ in RESERVED_ROOTS or self.index_as in RESERVED_ROOTS:
            raise ValueError(f"as/index_as can't be {', '.join(RESERVED_ROOTS)}")
        return self


class SwitchCase(_Model):
    when: str = Field(min_length=1)
    steps: Block


class SwitchConfig(_Model):
    cases: list[SwitchCase] = Field(min_length=1)
    default: list[Step] | None = None
    error_mode: ErrorMode | None = None


class LoopConfig(_Model):
    steps: Block
    until: str = Field(min_length=1)
    max_iterations: int = Field(ge=1, le=100)
    # How many iterations' outputs the record keeps (all by default; the bound is 100).
    keep_last: int | None = Field(default=None, ge=1, le=100)
    error_mode: ErrorMode | None = None


class WaitConfig(_Model):
    seconds: float | str | None = None
    until: str | None = None
    error_mode: ErrorMode | None = None

    @model_validator(mode="after")
    def _one(self) -> WaitConfig:
        if (self.seconds is None) == (self.until is None):
            raise ValueError("give exactly one of seconds or until")
        if isinstance(self.seconds, int | float) and not 0 <= self.seconds <= 30 * 86400:
            raise ValueError("seconds is 0 to 2592000 (30 days)")
        return self


class ApprovalConfig(_Model):
    prompt: str | None = Field(default=None, max_length=4000)  # shown to the approver
    # JSON Schema of the decision's `data`; a decision that breaks it is refused (422).
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    timeout_seconds: float | None = Field(default=None, gt=0, le=30 * 86400)
    on_timeout: Literal["fail", "approve", "reject"] = "fail"
    # API-key names allowed to decide; empty: any key that may act on the job.
    approvers: list[str] = Field(default_factory=list)
    error_mode: ErrorMode | None = None


class WaitForEventConfig(_Model):
    event: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    timeout_seconds: float | None = Field(default=None, gt=0, le=30 * 86400)
    # null: the step completes with a null output when no event came in time.
    on_timeout: Literal["fail", "null"] = "fail"
    error_mode: ErrorMode | None = None


class SubWorkflowConfig(_Model):
    workflow: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=100)
    version: str | None = Field(default=None, max_length=50)  # default: the highest at submit
    input: Any = None
    # false: start the child and go on (output {job_id}); it outlives the parent.
    wait: bool = True
    error_mode: ErrorMode | None = None


class SubWorkflowStep(_StepBase):
    type: Literal["sub_workflow"]
    config: SubWorkflowConfig


def sub_workflow_key(workflow: str, version: str | None) -> str:
    """How a parent's snapshot names the definition a sub_workflow step runs."""
    return f"{workflow}@{version or ''}"


class ApprovalStep(_StepBase):
    type: Literal["approval"]
    config: ApprovalConfig

    def check(self, ctx: StepChecks) -> None:
        ctx.refs(self.config.prompt, "config.prompt")
        ctx.json_schema(self.config.schema_, "config.schema")


class WaitForEventStep(_StepBase):
    type: Literal["wait_for_event"]
    config: WaitForEventConfig

    def check(self, ctx: StepChecks) -> None:
        ctx.json_schema(self.config.schema_, "config.schema")


class ParallelStep(_StepBase):
    type: Literal["parallel"]
    config: ParallelConfig
    budget: BudgetSpec | None = None  # bounds every llm call inside, all items/iterations

    def blocks(self) -> list[BlockSpec]:
        return [
            BlockSpec(f"config.branches.{name}", steps, label=name)
            for name, steps in self.config.branches.items()
        ]

    def check(self, ctx: StepChecks) -> None:
        pass  # only its branches hold references


class ForeachStep(_StepBase):
    type: Literal["foreach"]
    config: ForeachConfig
    budget: BudgetSpec | None = None  # bounds every llm call inside, all items/iterations

    def blocks(self) -> list[BlockSpec]:
        names = (self.config.as_, self.config.index_as)
        return [BlockSpec("config.steps", self.config.steps, variables=names)]

    def check(self, ctx: StepChecks) -> None:
        cfg = self.config
        ctx.refs(cfg.items, "config.items")
        ctx.refs(cfg.max_concurrency, "config.max_concurrency")
        # `output` is evaluated per item, after the item's steps ran.
        ctx.refs(cfg.output, "config.output", inner=True, names=(cfg.as_, cfg.index_as))


class SwitchStep(_StepBase):
    type: Literal["switch"]
    config: SwitchConfig
    budget: BudgetSpec | None = None  # bounds every llm call inside, all items/iterations

    def blocks(self) -> list[BlockSpec]:
        found = [
            BlockSpec(f"config.cases[{i}].steps", case.steps, label=f"case{i}")
            for i, case in enumerate(self.config.cases)
        ]
        if self.config.default:
            found.append(BlockSpec("config.default", self.config.default, label="default"))
        return found

    def check(self, ctx: StepChecks) -> None:
        for i, case in enumerate(self.config.cases):
            ctx.condition(case.when, f"config.cases[{i}].when")


class LoopStep(_StepBase):
    type: Literal["loop"]
    config: LoopConfig
    budget: BudgetSpec | None = None  # bounds every llm call inside, all items/iterations

    def blocks(self) -> list[BlockSpec]:
        # ${iteration} counts from 1; ${previous.<id>…} reads the last iteration's steps.
        return [BlockSpec("config.steps", self.config.steps, variables=LOOP_VARIABLES)]

    def check(self, ctx: StepChecks) -> None:
        # `until` is read after each iteration: it sees that iteration's steps too.
        ctx.condition(self.config.until, "config.until", inner=True, names=LOOP_VARIABLES)


class WaitStep(_StepBase):
    type: Literal["wait"]
    config: WaitConfig

    def check(self, ctx: StepChecks) -> None:
        ctx.refs(self.config.seconds, "config.seconds")
        ctx.refs(self.config.until, "config.until")


Step = Annotated[
    LlmStep
    | ExternalApiStep
    | TransformStep
    | HttpStep
    | WebhookStep
    | ParallelStep
    | ForeachStep
    | SwitchStep
    | LoopStep
    | WaitStep
    | ApprovalStep
    | WaitForEventStep
    | SubWorkflowStep,
    Field(discriminator="type"),
]
for _model in (ParallelConfig, ForeachConfig, SwitchCase, SwitchConfig, LoopConfig):
    _model.model_rebuild()

STEP_TYPES = (
    "llm",
    "external_api",
    "transform",
    "http",
    "webhook",
    "parallel",
    "foreach",
    "switch",
    "loop",
    "wait",
    "approval",
    "wait_for_event",
    "sub_workflow",
)
ACTIVITY_STEP_TYPES = frozenset({"llm", "external_api", "http", "webhook"})
CONTROL_STEP_TYPES = frozenset({"parallel", "foreach", "switch", "loop", "wait"})
# Named in the DSL's design but not built yet: the loader says so instead of "unknown type".
LATER_STEP_TYPES = ("wait_for_signal",)
LOOP_VARIABLES = ("iteration", "previous")
# Reference roots a foreach's `as`/`index_as` may not shadow.
RESERVED_ROOTS = ("input", "steps", "context")


def parse_tolerance(value: str) -> float | None:
    """'10%' → 0.1 (a share of the items); '3' → 3.0 (a count); None when neither."""
    text = value.strip()
    if text.endswith("%"):
        number = text[:-1].strip()
        if number.replace(".", "", 1).isdigit() and float(number) <= 100:
            return float(number) / 100
        return None
    return float(text) if text.isdigit() else None


def _matches(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text) is not None


class WorkflowDefinition(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=100)
    version: str = Field(default="1.0.0", pattern=r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
    description: str | None = None
    inputs: list[InputSpec] = Field(default_factory=list)
    input_schema: dict[str, Any] | None = None
    steps: list[Step] = Field(min_length=1)
    output: Any = None
    default_error_mode: ErrorMode = "fail"
    timeout_seconds: float = Field(default=600, gt=0, le=30 * 86400)
    budget: BudgetSpec | None = None  # the whole job's llm spend (a submit may lower it)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        data = _move_alias(data, "timeout_seconds", "timeout")
        return _move_alias(data, "output", "outputs")

    def step_error_mode(self, step: _StepBase) -> ErrorMode:
        config_mode = getattr(step.config, "error_mode", None)  # type: ignore[attr-defined]
        return step.error_mode or config_mode or self.default_error_mode


def version_key(version: str) -> tuple[int, int, int, int, str]:
    """Sort key: highest release wins over its pre-releases (1.0.0 > 1.0.0-rc1)."""
    core, _, pre = version.replace("+", "-", 1).partition("-")
    parts = [int(p) for p in core.split(".")[:3]]
    return (parts[0], parts[1], parts[2], 0 if pre else 1, pre)
