"""Pydantic models of a workflow definition (DESIGN §3.1-3.4): the DSL's single source of truth.

Compatible with the earlier service's files: aliases (`timeout`, `outputs`, `method`,
`parameters`/`params`/`config`, `error_mode` inside `config`) are normalised into one canonical
field each, so `model_dump()` of a loaded definition round-trips through `model_validate()`.
Unknown fields are kept (extra="allow") and reported as warnings by the loader.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.payload_limits import STEP_OUTPUT_CEILING

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


class TransformConfig(_Model):
    operation: str = Field(min_length=1)
    input: Any = None
    config: dict[str, Any] = Field(default_factory=dict)
    error_mode: ErrorMode | None = None


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


class LlmStep(_StepBase):
    type: Literal["llm"]
    config: LlmConfig


class ExternalApiStep(_StepBase):
    type: Literal["external_api"]
    config: ExternalApiConfig


class TransformStep(_StepBase):
    type: Literal["transform"]
    config: TransformConfig


class HttpStep(_StepBase):
    type: Literal["http"]
    config: HttpConfig


class WebhookStep(_StepBase):
    type: Literal["webhook"]
    config: WebhookConfig


Step = Annotated[
    LlmStep | ExternalApiStep | TransformStep | HttpStep | WebhookStep,
    Field(discriminator="type"),
]
STEP_TYPES = ("llm", "external_api", "transform", "http", "webhook")
ACTIVITY_STEP_TYPES = frozenset({"llm", "external_api", "http", "webhook"})
CONTROL_FLOW_TYPES = ("parallel", "foreach", "switch", "wait", "wait_for_signal", "sub_workflow")


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
