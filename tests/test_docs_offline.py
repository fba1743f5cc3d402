"""`/docs` and `/redoc` work without internet: every asset the pages reference is served by the
gateway itself (FastAPI's defaults load Swagger UI and ReDoc from a CDN: a blank page offline)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from core.settings import Settings
from tests.api_server import gateway


class _Refs(HTMLParser):
    """Every src/href of the page (scripts, stylesheets, favicon)."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.refs.append(value)


def _refs(html: str) -> list[str]:
    parser = _Refs()
    parser.feed(html)
    return parser.refs


@pytest.fixture
def offline_settings(tmp_path: Path) -> Settings:
    # No Temporal, no Redis: the docs need nothing but the gateway.
    return Settings(
        environment="test",
        database_url=f"sqlite:///{tmp_path / 'mirror.db'}",
        temporal_address="127.0.0.1:9",
        redis_url=None,
    )


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
        ("/redoc", {"redoc.standalone.js", "favicon.png"}),
    ],
)
async def test_docs_pages_load_every_asset_from_the_gateway(
    offline_settings: Settings, page: str, expected: set[str]
) -> None:
    async with gateway(offline_settings) as client:
        resp = await client.get(page)
        assert resp.status_code == 200, resp.text
        html = resp.text
        # Nothing is fetched from another host (CDN, Google Fonts, the online validator).
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.I), html
        refs = _refs(html)
        assert {ref.rsplit("/", 1)[-1] for ref in refs} >= expected, refs
        for ref in refs:
            assert ref.startswith("/"), ref
            asset = await client.get(ref)
            assert asset.status_code == 200, (ref, asset.status_code)
            assert asset.content, ref
        # The spec the page loads is served too.
        assert "/openapi.json" in html
        spec = await client.get("/openapi.json")
        assert spec.status_code == 200 and spec.json()["openapi"].startswith("3.")
        if page == "/docs":
            js = await client.get("/docs-assets/swagger-ui-bundle.js")
            assert "SwaggerUIBundle" in js.text
            assert "javascript" in js.headers["content-type"]
            css = await client.get("/docs-assets/swagger-ui.css")
            assert css.headers["content-type"].startswith("text/css")
            assert "validatorUrl" in html  # no badge that posts the spec to a public validator
            redirect = await client.get("/docs/oauth2-redirect")
            assert redirect.status_code == 200
