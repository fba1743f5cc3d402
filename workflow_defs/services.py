"""The declarative service registry behind `external_api` steps: services.json.

Pure and load-time only: pydantic models of the registry, `load_services`, and `build_request`,
which turns a step's parameters into an HTTP request without touching the network, the clock or
the environment. Secrets and base-URL overrides are applied by the activity, not here, so a
PreparedRequest never holds a key.

Special cases that JSON cannot express (the Places API (New) translation) are code hooks named
in the registry as "module:function" inside this project's `activities` package; they are
imported on first use, never at load time.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import ErrorType

DEFAULT_SERVICES_PATH = Path(__file__).with_name("services.json")

_NAME = r"^[A-Za-z][A-Za-z0-9_]*$"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Hooks may only live in our own activities package: the registry must not be able to name
# arbitrary importable code (os:system).
_HOOK_REF = re.compile(r"^activities(\.[a-z_][a-z0-9_]*)+:[A-Za-z_][A-Za-z0-9_]*$")


class ServiceRegistryError(ValueError):
    """services.json is unreadable or invalid; the message names the file and the bad entry."""


class ServiceParamError(ValueError):
    """A step's parameters don't fit the operation; `params` names the offending ones."""

    def __init__(self, message: str, params: list[str] | None = None) -> None:
        super().__init__(message)
        self.params = params or []


class UnknownServiceError(LookupError):
    """No such service, operation or API variant in the registry."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class AuthDef(_Model):
    """Where the key goes and which env vars hold it, first non-empty wins."""

    in_: Literal["query", "header"] = Field(alias="in")
    name: str = Field(min_length=1)
    env: list[str] = Field(default_factory=list)
    prefix: str = ""  # e.g. "Bearer " for an Authorization header


class RateLimit(_Model):
    requests_per_second: float | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, gt=0)


class BreakerDef(_Model):
    """Circuit breaker overrides; absent fields keep the defaults (5 failures, 30 s)."""

    failure_threshold: int = Field(default=5, ge=1)
    recovery_timeout: float = Field(default=30.0, gt=0)


class ErrorBodySpec(_Model):
    """Dotted paths to the message/code in the service's JSON error body."""

    message: str | None = None
    code: str | None = None


class StatusRule(_Model):
    type: str
    retryable: bool

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in ErrorType.__members__:
            raise ValueError(
                f"unknown error type {value!r}; one of {sorted(ErrorType.__members__)}"
            )
        return value


class StatusCheck(_Model):
    """For services that answer HTTP 200 with a status field (legacy Google web services)."""

    field: str
    ok: list[str] = Field(min_length=1)
    message_field: str | None = None
    errors: dict[str, StatusRule] = Field(default_factory=dict)
    default: StatusRule = StatusRule(type="UPSTREAM_REJECTED", retryable=False)

    def rule_for(self, status: Any) -> StatusRule | None:
        """None when the status means success."""
        if isinstance(status, str) and status in self.ok:
            return None
        return self.errors.get(status, self.default) if isinstance(status, str) else self.default


class ParamSpec(_Model):
    in_: Literal["query", "body", "header", "path"] = Field(default="query", alias="in")
    from_: list[str] = Field(default_factory=list, alias="from")
    value: Any = None
    format: Literal[
        "auto", "string", "integer", "number", "boolean", "yes_no", "csv", "latlng", "json"
    ] = "auto"
    default: Any = None
    required: bool = False
    description: str | None = None

    @field_validator("from_", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def sources(self) -> set[str]:
        """Step parameter names this HTTP parameter can be filled from."""
        names: set[str] = set()
        for alt in self.from_:
            names.update(_PLACEHOLDER.findall(alt) if "{" in alt else [alt])
        return names

    def hint(self, target: str) -> str:
        alts = []
        for alt in self.from_ or [target]:
            names = _PLACEHOLDER.findall(alt) if "{" in alt else [alt]
            alts.append(" and ".join(repr(n) for n in names))
        return ", or ".join(alts)


class OperationDef(_Model):
    description: str | None = None
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    cache_ttl: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> OperationDef:
        if not self.path.startswith("/"):
            raise ValueError(f"path {self.path!r} must start with '/'")
        in_path = {n for n, p in self.params.items() if p.in_ == "path"}
        missing = set(_PLACEHOLDER.findall(self.path)) - in_path
        if missing:
            raise ValueError(f"path placeholders {sorted(missing)} have no 'in: path' param")
        for name, spec in self.params.items():
            if spec.value is not None and spec.from_:
                raise ValueError(f"param {name!r}: give either 'value' or 'from', not both")
            if spec.in_ == "path" and not (spec.required or spec.default is not None):
                raise ValueError(f"path param {name!r} must be required or have a default")
        return self

    def specs(self) -> dict[str, ParamSpec]:
        """Params with `from` defaulted to the HTTP name itself."""
        return {
            name: spec
            if spec.from_ or spec.value is not None
            else spec.model_copy(update={"from_": [name]})
            for name, spec in self.params.items()
        }

    def accepted(self) -> set[str]:
        return set().union(*(s.sources() for s in self.specs().values()))


def _check_hook_ref(value: str | None) -> str | None:
    if value is not None and not _HOOK_REF.match(value):
        raise ValueError(f"hook {value!r} must look like 'activities.module:function'")
    return value


class VariantDef(_Model):
    """An alternative API of the same service; absent fields inherit from the service."""

    description: str | None = None
    base_url: str | None = None
    auth: AuthDef | None = None
    error_body: ErrorBodySpec | None = None
    # Not inherited: a variant answers in its own wire format.
    status_check: StatusCheck | None = None
    request_hook: str | None = None
    response_hook: str | None = None

    _hooks = field_validator("request_hook", "response_hook")(_check_hook_ref)


class ServiceVariant(_Model):
    """The effective settings of one service under one variant."""

    name: str
    base_url: str
    base_url_env: str | None
    auth: AuthDef | None
    error_body: ErrorBodySpec | None
    status_check: StatusCheck | None
    request_hook: str | None
    response_hook: str | None


class ServiceDef(_Model):
    description: str | None = None
    base_url: str = Field(pattern=r"^https?://")
    base_url_env: str | None = None
    auth: AuthDef | None = None
    cache_ttl: int = Field(default=300, ge=0)
    rate_limit: RateLimit | None = None
    breaker: BreakerDef | None = None
    error_body: ErrorBodySpec | None = None
    status_check: StatusCheck | None = None
    response_hook: str | None = None
    default_variant: str = "default"
    variant_env: str | None = None
    variants: dict[str, VariantDef] = Field(default_factory=dict)
    operations: dict[str, OperationDef] = Field(min_length=1)

    _hooks = field_validator("response_hook")(_check_hook_ref)

    @model_validator(mode="after")
    def _check(self) -> ServiceDef:
        if self.auth is not None and not self.auth.env:
            raise ValueError("auth.env must name at least one environment variable")
        if self.default_variant in self.variants:
            raise ValueError(f"variant {self.default_variant!r} is the service itself")
        for name in [*self.operations, *self.variants]:
            if not re.match(_NAME, name):
                raise ValueError(f"name {name!r} must match {_NAME}")
        return self

    def variant(self, name: str | None = None) -> ServiceVariant:
        if name in (None, "", self.default_variant):
            return ServiceVariant(
                name=self.default_variant,
                base_url=self.base_url,
                base_url_env=self.base_url_env,
                auth=self.auth,
                error_body=self.error_body,
                status_check=self.status_check,
                request_hook=None,
                response_hook=self.response_hook,
            )
        var = self.variants.get(name)
        if var is None:
            known = [self.default_variant, *self.variants]
            raise UnknownServiceError(f"unknown API variant {name!r}; one of {known}")
        auth = self.auth
        if var.auth is not None:
            # A variant may move the key (query → header) but keeps the service's env vars.
            auth = (
                var.auth
                if var.auth.env or auth is None
                else var.auth.model_copy(update={"env": auth.env})
            )
        return ServiceVariant(
            name=name,
            base_url=var.base_url or self.base_url,
            base_url_env=self.base_url_env,
            auth=auth,
            error_body=var.error_body or self.error_body,
            status_check=var.status_check,
            request_hook=var.request_hook,
            response_hook=var.response_hook,
        )


class ServiceRegistry(_Model):
    description: str | None = None
    services: dict[str, ServiceDef]

    @field_validator("services")
    @classmethod
    def _names(cls, value: dict[str, ServiceDef]) -> dict[str, ServiceDef]:
        for name in value:
            if not re.match(_NAME, name):
                raise ValueError(f"service name {name!r} must match {_NAME}")
        return value

    def names(self) -> list[str]:
        return sorted(self.services)

    def has(self, service: str, operation: str) -> bool:
        svc = self.services.get(service)
        return svc is not None and operation in svc.operations

    def get(self, service: str) -> ServiceDef:
        try:
            return self.services[service]
        except KeyError:
            raise UnknownServiceError(
                f"unknown service {service!r}; known services: {', '.join(self.names())}"
            ) from None

    def operation(self, service: str, operation: str) -> OperationDef:
        svc = self.get(service)
        try:
            return svc.operations[operation]
        except KeyError:
            raise UnknownServiceError(
                f"unknown operation {service}.{operation}; "
                f"known operations: {', '.join(sorted(svc.operations))}"
            ) from None

    def cache_ttl(self, service: str, operation: str) -> int:
        op = self.operation(service, operation)
        return op.cache_ttl if op.cache_ttl is not None else self.get(service).cache_ttl


def load_services(path: str | Path = DEFAULT_SERVICES_PATH) -> ServiceRegistry:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ServiceRegistryError(f"cannot read service registry {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ServiceRegistryError(
            f"service registry {path} is not valid JSON (line {exc.lineno}, column {exc.colno}): "
            f"{exc.msg}"
        ) from exc
    try:
        return ServiceRegistry.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ServiceRegistryError(f"invalid service registry {path}: {problems}") from exc


class PreparedRequest(_Model):
    method: str
    path: str
    query: dict[str, str] = Field(default_factory=dict)
    json_body: Any = None
    headers_without_auth: dict[str, str] = Field(default_factory=dict)


RequestHook = Callable[[str, dict[str, Any]], PreparedRequest]


@lru_cache
def resolve_hook(ref: str) -> Callable[..., Any]:
    if not _HOOK_REF.match(ref):
        raise ServiceRegistryError(f"hook {ref!r} must look like 'activities.module:function'")
    module_name, attr = ref.split(":", 1)
    try:
        hook = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ServiceRegistryError(f"hook {ref!r} cannot be loaded: {exc}") from exc
    if not callable(hook):
        raise ServiceRegistryError(f"hook {ref!r} is not callable")
    return hook


def build_request(
    registry: ServiceRegistry,
    service: str,
    operation: str,
    params: dict[str, Any],
    *,
    api_variant: str | None = None,
) -> PreparedRequest:
    """Map step parameters to the HTTP request; ServiceParamError names what is wrong."""
    op = registry.operation(service, operation)
    variant = registry.get(service).variant(api_variant)
    what = f"{service}.{operation}"
    values = _resolve_values(op, params or {}, what)
    if variant.request_hook:
        hook: RequestHook = resolve_hook(variant.request_hook)
        return hook(operation, {name: value for name, (_, value) in values.items()})
    return _place(op, values)


def _resolve_values(
    op: OperationDef, params: dict[str, Any], what: str
) -> dict[str, tuple[ParamSpec, Any]]:
    specs = op.specs()
    unknown = sorted(set(params) - op.accepted())
    if unknown:
        raise ServiceParamError(
            f"{what}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(sorted(op.accepted()))}",
        )
    given = {k: v for k, v in params.items() if v is not None and v != ""}
    values: dict[str, tuple[ParamSpec, Any]] = {}
    missing: dict[str, str] = {}
    for target, spec in specs.items():
        raw = spec.value if spec.value is not None else _first_alternative(spec, given)
        if raw is None:
            raw = spec.default
        if raw is None:
            if spec.required:
                missing[target] = f"{target} (give {spec.hint(target)})"
            continue
        try:
            values[target] = (spec, format_value(raw, spec.format))
        except ValueError as exc:
            raise ServiceParamError(f"{what}: parameter {target!r}: {exc}", [target]) from None
    if missing:
        raise ServiceParamError(
            f"{what}: missing required parameter(s): {'; '.join(missing.values())}",
            list(missing),
        )
    return values


def _first_alternative(spec: ParamSpec, given: dict[str, Any]) -> Any:
    for alt in spec.from_:
        if "{" not in alt:
            if alt in given:
                return given[alt]
            continue
        names = _PLACEHOLDER.findall(alt)
        if all(n in given for n in names):
            return _PLACEHOLDER.sub(lambda m: query_text(given[m.group(1)]), alt)
    return None


def _place(op: OperationDef, values: dict[str, tuple[ParamSpec, Any]]) -> PreparedRequest:
    query: dict[str, str] = {}
    headers: dict[str, str] = {}
    body: dict[str, Any] = {}
    path = op.path
    for target, (spec, value) in values.items():
        if spec.in_ == "query":
            query[target] = query_text(value)
        elif spec.in_ == "header":
            headers[target] = query_text(value)
        elif spec.in_ == "path":
            path = path.replace("{" + target + "}", quote(query_text(value), safe=""))
        else:
            _set_dotted(body, target, value)
    return PreparedRequest(
        method=op.method,
        path=path,
        query=query,
        json_body=body or None,
        headers_without_auth=headers,
    )


def _set_dotted(body: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = body
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def format_value(raw: Any, fmt: str) -> Any:
    """Coerce one parameter value; ValueError says what was expected."""
    if fmt in ("auto", "json"):
        return raw
    if fmt == "string":
        return query_text(raw)
    if fmt == "integer":
        return _to_number(raw, integer=True)
    if fmt == "number":
        return _to_number(raw, integer=False)
    if fmt == "boolean":
        return _to_bool(raw)
    if fmt == "yes_no":
        return "yes" if _to_bool(raw) else "no"
    if fmt == "csv":
        if isinstance(raw, list | tuple):
            return ",".join(query_text(v).strip() for v in raw)
        if isinstance(raw, str):
            return ",".join(p.strip() for p in raw.split(",") if p.strip())
        raise ValueError(f"expected a list or comma-separated string, got {raw!r}")
    if fmt == "latlng":
        return _to_latlng(raw)
    raise ValueError(f"unknown format {fmt!r}")


def query_text(value: Any) -> str:
    """How a value is written into a query string, header or template."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(query_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return "" if value is None else str(value)


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ValueError(f"expected a boolean, got {raw!r}")


def _to_number(raw: Any, *, integer: bool) -> int | float:
    num: float | int
    if isinstance(raw, bool):
        raise ValueError(f"expected a number, got {raw!r}")
    if isinstance(raw, int | float):
        num = raw
    elif isinstance(raw, str):
        try:
            num = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
    else:
        raise ValueError(f"expected a number, got {raw!r}")
    if num != num or num in (float("inf"), float("-inf")):
        raise ValueError(f"expected a finite number, got {raw!r}")
    if float(num).is_integer():
        return int(num)
    if integer:
        raise ValueError(f"expected an integer, got {raw!r}")
    return float(num)


def _to_latlng(raw: Any) -> str:
    """ "lat,lng" from a string, a [lat, lng] pair or a {lat, lng}/{latitude, longitude} object."""
    pair: list[Any]
    if isinstance(raw, dict):
        pair = [raw.get("lat", raw.get("latitude")), raw.get("lng", raw.get("longitude"))]
    elif isinstance(raw, list | tuple):
        pair = list(raw)
    elif isinstance(raw, str):
        pair = raw.split(",")
    else:
        pair = []
    if len(pair) != 2 or any(p is None for p in pair):
        raise ValueError(f'expected a location "lat,lng", got {raw!r}')
    try:
        lat, lng = (_to_number(p, integer=False) for p in pair)
    except ValueError:
        raise ValueError(f'expected a location "lat,lng", got {raw!r}') from None
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise ValueError(f"location {raw!r} is out of range")
    return f"{lat},{lng}"


def get_dotted(data: Any, dotted: str) -> Any:
    """`error.message` from a JSON response; None when any step is missing."""
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
