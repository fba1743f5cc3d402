"""The codec server: POST /codec/decode and /codec/encode for the Temporal Web UI and CLI.

With LLMFLOW_PAYLOAD_KEY set, Temporal stores only encrypted payloads (core/payload_codec.py).
The Web UI (its codec endpoint set to `<gateway>/codec`) and `temporal … --codec-endpoint`
send the payloads they show here to be decoded, in Temporal's codec server protocol: a
`Payloads` message as protobuf JSON, `{"payloads": [{"metadata": {name: base64}, "data":
base64}]}`, with the namespace in `X-Namespace`. Payloads that are not encrypted come back as
they are; one that cannot be opened (unknown key id, altered data) makes the answer a 400 that
says why.

The browser calls these endpoints from the Web UI's origin, so they answer CORS for it
(TEMPORAL_UI_URL, or the dev server's UI on TEMPORAL_UI_PORT; a loopback host in any of its
spellings), credentials allowed. With API_KEYS set they need a key like the rest of the API
(`Authorization: Bearer <key>` or `X-API-Secret`); a preflight never carries one, so OPTIONS
is open.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Header, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from temporalio.api.common.v1 import Payload

from api.auth import Principal
from api.errors import ApiError, error_body
from core.payload_codec import (
    EncryptionCodec,
    PayloadDecodeError,
    PayloadKeyring,
    payload_codec,
)
from core.settings import Settings

log = logging.getLogger("llmflow.api")

LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
ALLOW_HEADERS = "Authorization, Content-Type, X-Namespace, X-API-Secret"
ALLOW_METHODS = "POST, OPTIONS"


def ui_origins(settings: Settings) -> set[str]:
    """Origins the Web UI is served from: TEMPORAL_UI_URL's, or the dev server UI's; a
    loopback host also under its other names (the UI may be opened as either)."""
    parts = urlsplit(settings.temporal_ui_base())
    scheme = (parts.scheme or "http").lower()
    host = (parts.hostname or "localhost").lower()
    port = f":{parts.port}" if parts.port else ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    # A loopback or wildcard address: the UI is opened on this machine, under any of its names.
    hosts = set(LOOPBACK) if host in (*LOOPBACK, "0.0.0.0", "[::]") else {host}
    return {f"{scheme}://{name}{port}" for name in hosts}


def cors_headers(request: Request, *, preflight: bool = False) -> dict[str, str]:
    origin = request.headers.get("origin")
    if not origin or origin.rstrip("/").lower() not in ui_origins(request.app.state.settings):
        return {}
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }
    if preflight:
        # Whatever headers the UI asks for (a newer UI may send one more); the key still decides.
        requested = request.headers.get("access-control-request-headers")
        headers |= {
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": requested or ALLOW_HEADERS,
            "Access-Control-Max-Age": "600",
        }
    return headers


class CorsRoute(APIRoute):
    """Adds the Web UI's CORS headers to every answer, errors (401, 400, 422) included: the
    browser hides an answer without them, and the UI could not tell why decoding failed."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_cors(request: Request) -> Response:
            try:
                response = await handler(request)
            except Exception as exc:
                exc_handler = next(
                    (
                        request.app.exception_handlers[cls]
                        for cls in type(exc).__mro__
                        if cls in request.app.exception_handlers
                    ),
                    None,
                )
                if exc_handler is None:
                    raise
                response = await exc_handler(request, exc)
            response.headers.update(cors_headers(request))
            return response

        return with_cors


router = APIRouter(prefix="/codec", tags=["codec"], route_class=CorsRoute)


class CodecPayload(BaseModel):
    metadata: dict[str, str] = Field(
        default_factory=dict, description="Metadata entries, each value base64"
    )
    data: str = Field(default="", description="The payload's bytes, base64")


class CodecPayloads(BaseModel):
    """A Temporal `Payloads` message in protobuf JSON."""

    payloads: list[CodecPayload] = Field(default_factory=list)


def _b64decode(text: str, where: str) -> bytes:
    # Protobuf JSON accepts standard and url-safe base64, padded or not.
    raw = text.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            status.HTTP_400_BAD_REQUEST, "InvalidPayload", f"{where} is not base64"
        ) from None


def _to_proto(body: CodecPayloads) -> list[Payload]:
    return [
        Payload(
            metadata={
                name: _b64decode(value, f"payloads[{i}].metadata.{name}")
                for name, value in p.metadata.items()
            },
            data=_b64decode(p.data, f"payloads[{i}].data"),
        )
        for i, p in enumerate(body.payloads)
    ]


def _to_json(payloads: list[Payload]) -> dict[str, Any]:
    return {
        "payloads": [
            {
                "metadata": {
                    name: base64.b64encode(value).decode("ascii")
                    for name, value in p.metadata.items()
                },
                "data": base64.b64encode(p.data).decode("ascii"),
            }
            for p in payloads
        ]
    }


def _codec(request: Request) -> EncryptionCodec:
    """The gateway's codec, built once; without any payload key one that opens nothing (an
    encrypted payload then gets a 400 naming its key id) and encodes nothing."""
    codec: EncryptionCodec | None = getattr(request.app.state, "payload_codec", None)
    if codec is None:
        codec = payload_codec(request.app.state.settings) or EncryptionCodec(
            PayloadKeyring(current_id=None, keys={})
        )
        request.app.state.payload_codec = codec
    return codec


NamespaceHeader = Annotated[
    str | None,
    Header(
        alias="X-Namespace",
        description="The namespace the payloads come from (sent by the Web UI and CLI); "
        "one key serves every namespace",
    ),
]
CODEC_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "A payload is not base64, or cannot be decoded (unknown key id, altered)"},
    401: {"description": "API_KEYS is set and no valid key was sent"},
}


@router.post("/decode", response_model=CodecPayloads, responses=CODEC_RESPONSES)
async def decode_payloads(
    request: Request, body: CodecPayloads, _: Principal, namespace: NamespaceHeader = None
) -> JSONResponse:
    """Decrypt payloads for display (Temporal's codec server protocol)."""
    codec = _codec(request)
    decoded = []
    for i, payload in enumerate(_to_proto(body)):
        try:
            decoded.append(codec.decode_one(payload))
        except PayloadDecodeError as exc:
            log.warning(
                "codec: payload %d of a decode request (namespace %s): %s", i, namespace, exc
            )
            raise ApiError(
                status.HTTP_400_BAD_REQUEST, "PayloadDecodeError", f"payloads[{i}]: {exc}"
            ) from None
    return JSONResponse(_to_json(decoded))


@router.post("/encode", response_model=CodecPayloads, responses=CODEC_RESPONSES)
async def encode_payloads(
    request: Request, body: CodecPayloads, _: Principal, namespace: NamespaceHeader = None
) -> JSONResponse:
    """Encrypt payloads (e.g. a signal's input typed into the Web UI) with the current key;
    unchanged when no LLMFLOW_PAYLOAD_KEY is set."""
    codec = _codec(request)
    return JSONResponse(_to_json([codec.encode_one(p) for p in _to_proto(body)]))


@router.options("/decode", include_in_schema=False)
@router.options("/encode", include_in_schema=False)
async def preflight(request: Request) -> Response:
    """CORS preflight from the Web UI: no key needed (browsers never send one here)."""
    headers = cors_headers(request, preflight=True)
    if not headers:
        allowed = ", ".join(sorted(ui_origins(request.app.state.settings)))
        return JSONResponse(
            error_body(
                403,
                f"origin {request.headers.get('origin')!r} is not the Temporal Web UI's "
                f"({allowed}); set TEMPORAL_UI_URL to the UI's address",
                "CorsOriginNotAllowed",
            ),
            status_code=403,
        )
    return Response(status_code=204, headers=headers)
