"""/api/v1/webhooks: inbound events (Strapi and sources declared in triggers.json) → workflows.

These routes carry their own authentication (HMAC signature or static bearer token per source),
so they are mounted without the API-key dependency.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from api import inbound_service as svc
from api import job_service
from api.deps import CatalogDep, EngineDep, SettingsDep, TemporalDep
from api.inbound_service import InboundConfig, WebhookAccepted
from workflow_defs.triggers import STRAPI

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class StrapiEvent(BaseModel):
    """What Strapi posts (documented for /docs; the raw body is what gets verified)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "event": "entry.publish",
                    "createdAt": "2026-01-05T10:00:00.000Z",
                    "model": "article",
                    "uid": "api::article.article",
                    "entry": {"id": 7, "title": "Durable execution", "slug": "durable"},
                }
            ]
        },
    )

    event: str | None = Field(
        default=None, description="Strapi's event name; else the X-Strapi-Event header"
    )
    createdAt: str | None = None  # Strapi spells it so
    model: str | None = Field(
        default=None,
        description="The content type (`entity` accepted; else the X-Strapi-Entity header). "
        "Required for `entry.*` events",
    )
    uid: str | None = None
    entry: dict[str, Any] | None = Field(
        default=None, description="The entry: v4 `{id, …fields}`, v5 `{id, documentId, …fields}`"
    )


def get_inbound(request: Request) -> InboundConfig:
    return request.app.state.inbound  # type: ignore[no-any-return]


InboundDep = Annotated[InboundConfig, Depends(get_inbound)]
Signature = Annotated[
    str | None,
    Header(
        alias=svc.SIGNATURE_HEADER,
        description="`sha256=<hex HMAC-SHA256 of the raw body>` with the source's secret",
    ),
]
Authorization = Annotated[
    str | None,
    Header(alias="Authorization", description="`Bearer <token>`: the source's static token"),
]
EventHeader = Annotated[
    str | None,
    Header(alias=svc.EVENT_HEADER, description="Event name, when the body has no `event`"),
]
StrapiSignature = Annotated[
    str | None,
    Header(
        alias=svc.STRAPI_SIGNATURE_HEADER,
        description="`<hex HMAC-SHA256 of the raw body>` with STRAPI_WEBHOOK_SECRET (bare hex, "
        "as the integration layer's clients send it)",
    ),
]
StrapiEventHeader = Annotated[
    str | None,
    Header(alias=svc.STRAPI_EVENT_HEADER, description="Event name, when the body has no `event`"),
]
StrapiEntityHeader = Annotated[
    str | None,
    Header(
        alias=svc.STRAPI_ENTITY_HEADER,
        description="Content type, when the body has neither `model` nor `entity`",
    ),
]

RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "description": (
            "Accepted. `started` lists the jobs the matching triggers started (after Temporal "
            "accepted each), with `replayed: true` for a redelivered body; an event no trigger "
            "matches is acknowledged with `started: []`"
        )
    },
    400: {"description": "Malformed JSON"},
    401: {
        "description": "Missing or invalid signature/token (`detail` names which); nothing was "
        "started"
    },
    404: {"description": "Unknown source (not strapi and not declared in triggers.json)"},
    409: {"description": "This event already started a job with a different input"},
    413: {"description": "Body over MAX_REQUEST_BYTES"},
    422: {
        "description": "The body is not an event object, names no event (or, for a Strapi "
        "`entry.*` event, no content type) in the body or headers, or a matching trigger maps it "
        "to invalid workflow input (`detail[].loc` names the field, or the trigger and input); "
        "nothing was started"
    },
    503: {
        "description": "Inbound webhooks not configured for this source, or Temporal unreachable "
        "(retry: the event was not accepted)"
    },
}


async def receive(
    source: str,
    request: Request,
    *,
    signatures: dict[str, str | None],
    authorization: str | None,
    headers: dict[str, str | None],
    inbound: InboundConfig,
    settings: SettingsDep,
    engine: EngineDep,
    catalog: CatalogDep,
    temporal: TemporalDep,
) -> WebhookAccepted:
    try:
        body = await request.body()  # the raw bytes: the signature covers exactly these
        await svc.authenticate_event(
            source,
            body,
            signatures=signatures,
            authorization=authorization,
            inbound=inbound,
            engine=engine,
            client_host=request.client.host if request.client else None,
        )
        return await svc.start_triggered_jobs(
            source,
            body,
            headers=headers,
            inbound=inbound,
            settings=settings,
            engine=engine,
            catalog=catalog,
            temporal=temporal,
        )
    except svc.UnknownSource as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except svc.NotConfigured as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    except svc.Unauthorized as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}
        ) from None
    except svc.BadBody as exc:
        raise HTTPException(exc.status, exc.detail) from None
    except svc.MappedInputInvalid as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.detail) from None
    except job_service.IdempotencyMismatch as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except job_service.ServiceUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers={"Retry-After": "5"}
        ) from None


@router.post(
    "/strapi",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookAccepted,
    responses=RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": StrapiEvent.model_json_schema()}},
        }
    },
)
async def strapi_webhook(
    request: Request,
    inbound: InboundDep,
    settings: SettingsDep,
    engine: EngineDep,
    catalog: CatalogDep,
    temporal: TemporalDep,
    signature: Signature = None,
    strapi_signature: StrapiSignature = None,
    authorization: Authorization = None,
    strapi_event: StrapiEventHeader = None,
    strapi_entity: StrapiEntityHeader = None,
    event_header: EventHeader = None,
) -> WebhookAccepted:
    """A Strapi event (`entry.create|update|delete|publish|unpublish`, `media.*`, …), v4 or v5.

    Authenticated by `STRAPI_WEBHOOK_SECRET` (HMAC-SHA256 of the raw body, as
    `X-Webhook-Signature: sha256=<hex>` or `X-Strapi-Signature: <hex>`) or
    `STRAPI_WEBHOOK_TOKEN` (`Authorization: Bearer`, a header set in Strapi's webhook settings);
    503 when neither is set. The event is the body's `event` (else `X-Strapi-Event`), the
    content type its `model` or `entity` (else `X-Strapi-Entity`). Each trigger in triggers.json
    matching (event, model) starts its workflow with input mapped from the body
    (`${entry.title}`)."""
    return await receive(
        STRAPI,
        request,
        signatures={
            svc.SIGNATURE_HEADER: signature,
            svc.STRAPI_SIGNATURE_HEADER: strapi_signature,
        },
        authorization=authorization,
        headers={
            svc.STRAPI_EVENT_HEADER: strapi_event,
            svc.EVENT_HEADER: event_header,
            svc.STRAPI_ENTITY_HEADER: strapi_entity,
        },
        inbound=inbound,
        settings=settings,
        engine=engine,
        catalog=catalog,
        temporal=temporal,
    )


@router.post(
    "/{source}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookAccepted,
    responses=RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def source_webhook(
    source: str,
    request: Request,
    inbound: InboundDep,
    settings: SettingsDep,
    engine: EngineDep,
    catalog: CatalogDep,
    temporal: TemporalDep,
    signature: Signature = None,
    authorization: Authorization = None,
    event_header: EventHeader = None,
) -> WebhookAccepted:
    """An event from a source declared under `sources` in triggers.json (its credentials come
    from the env vars named there). Same authentication, matching and answers as Strapi's."""
    return await receive(
        source,
        request,
        signatures={svc.SIGNATURE_HEADER: signature},
        authorization=authorization,
        headers={svc.EVENT_HEADER: event_header},
        inbound=inbound,
        settings=settings,
        engine=engine,
        catalog=catalog,
        temporal=temporal,
    )
