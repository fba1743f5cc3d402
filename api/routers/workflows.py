"""/api/v1/workflows: the registered definitions, their input schema and graph, and a validator.

Validating a definition is CPU work on a body anyone with an API key can send, so it runs on
an executor of its own (VALIDATE_WORKERS threads, one by default), never on the default pool
that every database call shares: a burst of large definitions then queues behind itself while
/health and GET /jobs keep answering. A body over the definition size limit is refused before
it queues; past VALIDATE_MAX_PENDING waiting requests the answer is 429.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from api.auth import Principal
from api.deps import CatalogDep, SettingsDep
from api.errors import ApiError
from api.workflow_graph import mermaid_flowchart
from api.workflow_schemas import (
    ValidationResult,
    WorkflowDetail,
    WorkflowGraph,
    WorkflowSummary,
    detail_of,
    issues,
    summary_of,
)
from workflow_defs.catalog import Catalog
from workflow_defs.loader import (
    MAX_DEFINITION_BYTES,
    DefinitionError,
    DefinitionTooLarge,
    LoadedDefinition,
    definition_bytes,
    validate_definition,
)

router = APIRouter(prefix="/workflows", tags=["workflows"])

Version = Annotated[
    str | None,
    Query(max_length=50, description="A version; the newest when omitted", examples=["1.0.0"]),
]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "Unknown workflow or version",
        "content": {
            "application/json": {
                "example": {"detail": "workflow 'quickstart' has no version 9.9.9; versions: 1.0.0"}
            }
        },
    }
}
AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key (when API_KEYS is set)"}
}

VALID_EXAMPLE = {
    "name": "hello",
    "version": "1.0.0",
    "inputs": [{"name": "who", "type": "string", "required": True}],
    "steps": [
        {
            "id": "greet",
            "type": "transform",
            "config": {
                "operation": "template",
                "config": {"template": "Hello, ${who}!", "variables": {"who": "${input.who}"}},
            },
        }
    ],
    "output": "${steps.greet.output}",
}
INVALID_EXAMPLE = {
    "name": "leaky",
    "steps": [
        {
            "id": "ask",
            "type": "llm",
            "config": {
                "model": "openai/gpt-4o-mini",
                "prompt_template": "../../etc/passwd",
                "variables": {"topic": "${steps.later.output}"},
            },
        },
        {"id": "later", "type": "transform", "config": {"operation": "join", "input": []}},
    ],
}


@functools.cache
def _validation_executor(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llmflow-validate")


_pending_validations = 0


def _find(catalog: Catalog, name: str, version: str | None) -> LoadedDefinition:
    loaded = catalog.definitions.get(name, version)
    if loaded is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, catalog.definitions.not_found(name, version))
    return loaded


@router.get("", response_model=list[WorkflowSummary], responses=AUTH)
async def list_workflows(catalog: CatalogDep, _: Principal) -> list[WorkflowSummary]:
    """Every registered workflow with its versions (newest first) and the latest's inputs."""
    registry = catalog.definitions
    return [
        summary_of(loaded, registry.versions(name))
        for name in registry.names()
        if (loaded := registry.get(name)) is not None
    ]


@router.post(
    "/validate",
    response_model=ValidationResult,
    responses={
        **AUTH,
        400: {"description": "Malformed JSON"},
        413: {
            "description": "Body over MAX_REQUEST_BYTES, or a definition over "
            f"{MAX_DEFINITION_BYTES:,} bytes of JSON"
        },
        429: {"description": "Too many validations waiting (VALIDATE_MAX_PENDING); retry"},
    },
)
async def validate_workflow(
    body: Annotated[
        Any,
        Body(
            description="A workflow definition, as in a WORKFLOW_DEFS_DIR file",
            openapi_examples={
                "valid": {"summary": "A valid definition", "value": VALID_EXAMPLE},
                "invalid": {
                    "summary": "A prompt outside PROMPTS_DIR and a reference to a later step",
                    "value": INVALID_EXAMPLE,
                },
            },
        ),
    ],
    request: Request,
    settings: SettingsDep,
    catalog: CatalogDep,
    _: Principal,
) -> ValidationResult:
    """Check a definition exactly as the gateway and worker do at start, without registering it.

    Always 200 for a well-formed JSON body: `valid` says whether it loads, and each error or
    warning carries the JSON path it is about (`$.steps[0].config.prompt_template`). A body
    that is JSON but not an object (an array, a string) is answered `valid: false` with an
    error at `$`. Prompt templates are read from PROMPTS_DIR and must stay inside it; external
    API steps must name a service and operation of the registry. A definition over the size
    limit is 413 naming it; conditions, prompts and patterns over theirs are errors at their
    path.
    """
    global _pending_validations
    # Measured again (as compact JSON) only when the raw body is already over: an oversized
    # body never waits for, or occupies, a validation thread.
    if len(await request.body()) > MAX_DEFINITION_BYTES:
        size = definition_bytes(body)
        if size > MAX_DEFINITION_BYTES:
            raise ApiError(
                status.HTTP_413_CONTENT_TOO_LARGE,
                "PayloadTooLarge",
                f"the definition is {size:,} bytes as JSON, over the "
                f"{MAX_DEFINITION_BYTES:,}-byte limit",
            )
    if _pending_validations >= settings.validate_max_pending:
        raise ApiError(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "TooManyRequests",
            f"{_pending_validations} definitions are waiting to be validated "
            f"(VALIDATE_MAX_PENDING); retry shortly",
            headers={"Retry-After": "1"},
        )
    check = functools.partial(
        validate_definition,
        body,
        source="request",
        prompts_dir=settings.prompts_dir,
        has_service=catalog.services.has,
    )
    executor = _validation_executor(settings.validate_workers)
    _pending_validations += 1
    try:
        loaded = await asyncio.get_running_loop().run_in_executor(executor, check)
    except DefinitionTooLarge as exc:
        raise ApiError(
            status.HTTP_413_CONTENT_TOO_LARGE, "PayloadTooLarge", exc.problems[0].message
        ) from None
    except DefinitionError as exc:
        return ValidationResult(
            valid=False,
            errors=issues(exc.problems),
            name=_str_field(body, "name"),
            version=_str_field(body, "version"),
        )
    finally:
        _pending_validations -= 1
    return ValidationResult(
        valid=True, warnings=issues(loaded.warnings), name=loaded.name, version=loaded.version
    )


def _str_field(body: Any, key: str) -> str | None:
    value = body.get(key) if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


@router.get("/{name}", response_model=WorkflowDetail, responses={**NOT_FOUND, **AUTH})
async def read_workflow(
    name: str, catalog: CatalogDep, _: Principal, version: Version = None
) -> WorkflowDetail:
    """One definition: its steps, output, input schema (JSON Schema) and content hash."""
    loaded = _find(catalog, name, version)
    return detail_of(loaded, catalog.definitions.versions(name))


GRAPH_EXAMPLE = (
    "flowchart TD\n"
    '    wf_start(("Start"))\n'
    '    s0(["classify (llm)"])\n'
    '    s1[/"customer_profile (http)<br/>on error: continue"/]\n'
    '    wf_end(("End"))\n'
    "    wf_start --> s0\n"
    '    s0 -.->|"when: input.crm_url != null"| s1\n'
    "    s1 --> wf_end\n"
    '    s0 -.->|"skip customer_profile"| wf_end\n'
)


@router.get(
    "/{name}/graph",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": 'Mermaid source; `format=json` wraps it as `{"mermaid": …}`',
            "content": {
                "text/plain": {"schema": {"type": "string"}, "example": GRAPH_EXAMPLE},
                "application/json": {
                    "schema": WorkflowGraph.model_json_schema(),
                    "example": {"mermaid": GRAPH_EXAMPLE},
                },
            },
        },
        **NOT_FOUND,
        **AUTH,
    },
)
async def workflow_graph(
    name: str,
    catalog: CatalogDep,
    _: Principal,
    version: Version = None,
    output_format: Annotated[
        Literal["text", "json"],
        Query(alias="format", description="`text` (Mermaid source) or `json`"),
    ] = "text",
) -> Response:
    """The steps as a Mermaid flowchart: Start, each step in order, End.

    Shapes: llm = stadium, external_api = subroutine, http = parallelogram, webhook =
    reversed parallelogram, transform = rectangle. A step with `when` is reached by a dashed
    edge labelled with its condition, and dashed `skip …` edges bypass it. Steps whose errors
    don't fail the job (`error_mode` continue/retry) say so and have a dashed border.
    """
    loaded = _find(catalog, name, version)
    text = mermaid_flowchart(loaded.definition)
    if output_format == "json":
        return JSONResponse(WorkflowGraph(mermaid=text).model_dump())
    return PlainTextResponse(text)
