"""/docs and /redoc without a CDN: Swagger UI and ReDoc served from the fastapi-offline package.

FastAPI's default pages load their JavaScript, CSS, favicon (and ReDoc's Google fonts) from
public hosts, which many hosts running this pipeline cannot reach. fastapi-offline ships those
files; only its static directory is used here (the routes stay ours, behind the API key).
"""

from __future__ import annotations

from importlib import resources

from fastapi import HTTPException
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS_PATH = "/docs-assets"
_MEDIA_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}


def swagger_page(openapi_url: str, title: str) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=openapi_url, title=title,
                               swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                               swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
                               swagger_favicon_url=f"{ASSETS_PATH}/favicon.png")


def redoc_page(openapi_url: str, title: str) -> HTMLResponse:
    return get_redoc_html(openapi_url=openapi_url, title=title,
                          redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
                          redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
                          with_google_fonts=False)


def asset(name: str) -> FileResponse:
    """One of the four shipped files (a fixed list: no path from the request reaches the disk)."""
    media_type = _MEDIA_TYPES.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no docs asset {name!r}; available: "
                                                    f"{', '.join(sorted(_MEDIA_TYPES))}")
    path = resources.files("fastapi_offline").joinpath("static", name)
    return FileResponse(str(path), media_type=media_type,
                        headers={"Cache-Control": "public, max-age=86400"})
