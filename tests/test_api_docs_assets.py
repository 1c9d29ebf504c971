"""/docs and /redoc work without internet access: the pages reference no external host, and the
Swagger UI / ReDoc assets they load are served by the API itself (from fastapi-offline)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.support.api import api_client

KEY = "docs-key"
REPO = Path(__file__).resolve().parents[1]


class References(HTMLParser):
    """Every URL a page makes the browser load: src/href attributes and SwaggerUI's `url:`."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.script = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "spec-url") and value:
                self.urls.append(value)

    def handle_data(self, data: str) -> None:
        self.script += data


def references(html: str) -> list[str]:
    page = References()
    page.feed(html)
    return page.urls + re.findall(r"url:\s*'([^']+)'", page.script)


@pytest.mark.parametrize("path, assets", [
    ("/docs", {"/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css",
               "/docs-assets/favicon.png", "/openapi.json"}),
    ("/redoc", {"/docs-assets/redoc.standalone.js", "/docs-assets/favicon.png",
                "/openapi.json"}),
])
def test_docs_pages_load_only_local_assets(path: str, assets: set[str]) -> None:
    with api_client() as c:
        page = c.get(path)
        assert page.status_code == 200
        urls = references(page.text)
        assert set(urls) == assets, urls
        assert not re.search(r"https?://|//[a-z]", page.text, re.I), "external host in the page"
        for url in urls:
            r = c.get(url)
            assert r.status_code == 200, url
            assert len(r.content) > 1000, url  # the real files, not an error body


@pytest.mark.parametrize("name, media_type, marker", [
    ("swagger-ui-bundle.js", "text/javascript", b"SwaggerUIBundle"),
    ("swagger-ui.css", "text/css", b".swagger-ui"),
    ("redoc.standalone.js", "text/javascript", b"Redoc"),
    ("favicon.png", "image/png", b"\x89PNG"),
])
def test_assets_are_the_swagger_ui_and_redoc_bundles(name: str, media_type: str,
                                                     marker: bytes) -> None:
    with api_client() as c:
        r = c.get(f"/docs-assets/{name}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(media_type)
    assert marker in r.content[:200_000]


@pytest.mark.parametrize("name", ["app.py", "..%2Fapp.py", "redoc.js"])
def test_only_the_shipped_assets_are_served(name: str) -> None:
    with api_client() as c:
        r = c.get(f"/docs-assets/{name}")
    assert r.status_code == 404
    assert r.content != (REPO / "services" / "api" / "app.py").read_bytes()
    if "/" not in name and "%" not in name:
        assert "available: favicon.png, redoc.standalone.js" in r.json()["detail"]


def test_assets_need_the_key_like_the_pages() -> None:
    with api_client(api_key=KEY) as c:
        assert c.get("/docs-assets/swagger-ui.css").status_code == 401
        assert c.get("/docs-assets/swagger-ui.css", headers={"X-API-Key": KEY}).status_code == 200
