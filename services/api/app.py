"""The FastAPI application: routes, auth, content negotiation and instrumentation."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import time
from contextlib import asynccontextmanager
from datetime import datetime
from importlib import resources
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from otel import privacy

from . import alerts, docs_ui, runbooks
from .models import DashboardSummary, Unavailable
from .auth import key_matches, require_api_key
from .metrics import ApiMetrics
from .prometheus import PrometheusClient, PrometheusQueryError, PrometheusUnavailable, probe
from .ratelimit import LIVENESS_PATH, Clock, RateLimiter
from .settings import Settings
from .summary import dashboard, health_summary
from .window import InvalidWindow, Window

log = logging.getLogger(__name__)

# Liveness/readiness and scrape endpoints stay out of traces and HTTP metrics (probe noise);
# the standard OTEL_PYTHON_FASTAPI_EXCLUDED_URLS replaces this list when set.
EXCLUDED_URLS = "/health,/metrics"
DEFAULT_WINDOW = "5m"
_LAST_END = 253402300799.0  # 9999-12-31T23:59:59Z, the last time a datetime can show

Protected = Depends(require_api_key)


@functools.cache
def _dashboard_page() -> str:
    return resources.files(__package__).joinpath("static/dashboard.html").read_text("utf-8")


def _parse_window(text: str) -> Window:
    try:
        return Window.parse(text)
    except InvalidWindow as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


def _parse_end(text: str | None) -> float:
    if text is None:
        return time.time()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds) and 0 <= seconds <= _LAST_END:
            return seconds
        raise HTTPException(status_code=422, detail=(
            f"end must be a finite unix timestamp from 0 to {_LAST_END:.0f} (year 9999); "
            f"got {text!r}"))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise HTTPException(status_code=422, detail=(
            f"end must be a unix timestamp or an RFC 3339 time with a zone "
            f"(e.g. 2026-01-05T12:00:00Z); got {text!r}")) from None
    if parsed.tzinfo is None:
        raise HTTPException(status_code=422,
                            detail=f"end must carry a time zone (e.g. ...Z); got {text!r}")
    return parsed.timestamp()


def _wants_html(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "html"
    accept = request.headers.get("accept", "")
    # Browsers list text/html first; API clients send application/json or */*.
    return accept.split(",")[0].strip().startswith("text/html")


def unavailable(reason: str) -> dict:
    """/dashboard's 503 body: no numbers at all, and why (the API keeps no history, so it
    cannot say since when Prometheus is gone)."""
    return {"detail": reason, "status": "unavailable",
            "degraded": [{"component": "prometheus", "reason": reason, "since": None,
                          "affects": ["metrics", "alerts"]}]}


def _upstream_error(exc: Exception) -> HTTPException:
    if isinstance(exc, PrometheusUnavailable):
        return HTTPException(status_code=503, detail=str(exc))
    return HTTPException(status_code=502, detail=str(exc))


async def _reachable_problem(client: httpx.AsyncClient, url: str | None, timeout: float,
                             what: str) -> str | None:
    if url is None:
        return None
    return await probe(client, url, timeout, f"{what} at {url}")


def _instrument(app: FastAPI, tracer_provider: Any) -> None:
    # The stable HTTP semantic conventions (http.server.request.duration, in seconds) unless the
    # deployment chose otherwise; the instrumentation still defaults to the old ones (ms).
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    excluded = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS") or EXCLUDED_URLS
    FastAPIInstrumentor.instrument_app(app, excluded_urls=excluded,
                                       tracer_provider=tracer_provider)


def _start_telemetry(settings: Settings) -> Any:
    """Our library's setup (OTEL_* env vars). A setting that is wrong stops the start (the
    operator must see it); any other telemetry failure leaves the API serving without it."""
    from otel import ConfigError, setup_telemetry

    try:
        return setup_telemetry(service_name=settings.service_name,
                               service_version=settings.version)
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - telemetry must never take the service down
        log.exception("telemetry setup failed; serving without telemetry")
        return None


def create_app(settings: Settings | None = None, *, metrics: ApiMetrics | None = None,
               tracer_provider: Any = None, clock: Clock = time.monotonic) -> FastAPI:
    """`clock` (monotonic seconds) drives the rate limiter's buckets; tests pass a fake one."""
    settings = settings or Settings.from_env()
    metrics = metrics or ApiMetrics()
    limiter = RateLimiter(settings, metrics, clock)
    telemetry = _start_telemetry(settings) if settings.telemetry else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        client = httpx.AsyncClient(timeout=settings.upstream_timeout_s)
        app.state.http = client
        app.state.prometheus = PrometheusClient(settings.prometheus_url,
                                                settings.upstream_timeout_s, client,
                                                observe=metrics.observe_query)
        try:
            yield
        finally:
            await client.aclose()
            if telemetry is not None:
                telemetry.shutdown()
            metrics.worker_exiting()

    app = FastAPI(
        title="CUGAr API",
        version=settings.version,
        description=("Golden signals of the CUGAr agent fleet, read from Prometheus. "
                     "Every endpoint except `GET /health` requires the API key when "
                     "CUGAR_API_KEY is set (header `X-API-Key`)."),
        docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan,
        # App-wide, so it runs on every route before the route's own API key check.
        dependencies=[Depends(limiter)],
    )
    app.state.settings = settings
    app.state.metrics = metrics

    # Error bodies quote what the client sent (a bad window, an unknown severity): the quote is
    # redacted like telemetry, so a secret or e-mail address in a request never comes back.
    @app.exception_handler(StarletteHTTPException)
    async def redacted_http_error(request: Request, exc: StarletteHTTPException) -> Any:
        if isinstance(exc.detail, str):
            exc.detail = privacy.redact_text(exc.detail)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def redacted_validation_error(request: Request, exc: RequestValidationError) -> Any:
        errors = privacy.redact_structure(jsonable_encoder(exc.errors()))
        return JSONResponse({"detail": errors}, status_code=422)

    @app.get("/", dependencies=[Protected], summary="Service index")
    async def index() -> dict:
        return {
            "service": settings.service_name,
            "version": settings.version,
            "endpoints": {
                "GET /health": "liveness (no API key needed)",
                "GET /health/ready": "readiness: collector, Prometheus and the trace backend reachable (503 if not)",
                "GET /dashboard?window=5m": "fleet-wide golden signals (JSON; HTML for browsers; "
                                            "&history=true adds their history over the window)",
                "GET /metrics": "the API's own metrics, all workers (Prometheus text)",
                "GET /runbooks": "alert runbooks (#<alert name in lower case>)",
                "POST /alerts/{severity}": "Alertmanager webhook receiver "
                                           f"({'|'.join(alerts.SEVERITIES)})",
                "GET /docs": "Swagger UI", "GET /redoc": "ReDoc",
                "GET /openapi.json": "OpenAPI schema",
            },
        }

    @app.get("/health", summary="Liveness")
    async def health(request: Request) -> dict:
        body: dict[str, Any] = {"status": "healthy", "service": settings.service_name,
                                "version": settings.version}
        # The summary is a bonus for callers allowed to see numbers; liveness never waits long
        # for it and never fails because of it.
        if settings.api_key is not None and not key_matches(settings.api_key, request):
            return body
        try:
            body["metrics"] = await asyncio.wait_for(
                health_summary(request.app.state.prometheus, Window.parse(DEFAULT_WINDOW),
                               time.time(), settings.health_summary_timeout_s),
                settings.health_summary_timeout_s)
        except (PrometheusUnavailable, PrometheusQueryError, asyncio.TimeoutError) as exc:
            body["metrics"] = None
            body["metrics_error"] = str(exc) or "Prometheus did not answer in time"
        return body

    @app.get("/health/ready", dependencies=[Protected], summary="Readiness",
             responses={503: {"description": "a dependency is unreachable"}})
    async def ready(request: Request) -> JSONResponse:
        timeout = settings.health_summary_timeout_s * 2
        http = request.app.state.http
        trace_query = (f"{settings.trace_backend_url}/api/v3/services"
                       if settings.trace_backend_url else None)
        collector, prometheus, traces = await asyncio.gather(
            _reachable_problem(http, settings.collector_health_url, timeout,
                               "collector health check"),
            request.app.state.prometheus.ready(timeout),
            _reachable_problem(http, trace_query, timeout, "trace backend query API"))

        def check(url: str | None, problem: str | None, unset: str | None = None) -> dict:
            return {"url": url, "ok": problem is None,
                    **({"reason": problem} if problem else {}),
                    **({"skipped": f"{unset} is empty"} if unset and url is None else {})}

        checks = {
            "collector": check(settings.collector_health_url, collector,
                               "CUGAR_COLLECTOR_HEALTH_URL"),
            "prometheus": check(settings.prometheus_url, prometheus),
            "trace_backend": check(settings.trace_backend_url, traces, "CUGAR_TRACE_BACKEND_URL"),
        }
        reasons = [r for r in (collector, prometheus, traces) if r]
        body = {"status": "ready" if not reasons else "not ready", "checks": checks}
        if reasons:
            body["reasons"] = reasons
        return JSONResponse(body, status_code=200 if not reasons else 503)

    @app.get("/dashboard", dependencies=[Protected], summary="Golden signals over a window",
             responses={200: {"description": "the summary (JSON), or the live page (HTML) for "
                                             "browsers and `format=html`",
                              "model": DashboardSummary,
                              "content": {"text/html": {"schema": {"type": "string"}}}},
                        422: {"description": "invalid window or end"},
                        502: {"description": "Prometheus rejected a query"},
                        503: {"description": "Prometheus is unreachable", "model": Unavailable}})
    async def get_dashboard(
        request: Request,
        window: Annotated[str, Query(description="1m..24h, e.g. 5m, 90s, 1h")] = DEFAULT_WINDOW,
        end: Annotated[str | None, Query(description="window end: unix seconds or RFC 3339; "
                                                     "default now")] = None,
        format: Annotated[str | None, Query(pattern="^(json|html)$",
                                            description="override content negotiation")] = None,
        history: Annotated[bool, Query(
            description="add the `history` section: success rate, error rate and latency p95 "
                        "over the window, from Prometheus range queries")] = False,
    ) -> Any:
        parsed = _parse_window(window)
        at = _parse_end(end)
        if _wants_html(request, format):
            return HTMLResponse(_dashboard_page())
        try:
            return await dashboard(request.app.state.prometheus, parsed, at, history)
        except PrometheusUnavailable as exc:
            return JSONResponse(status_code=503, content=unavailable(str(exc)))
        except PrometheusQueryError as exc:
            raise _upstream_error(exc) from None

    @app.get("/metrics", dependencies=[Protected], summary="The API's own metrics (all workers)",
             response_class=PlainTextResponse)
    async def get_metrics():
        return metrics.response()

    @app.get("/runbooks", dependencies=[Protected], summary="Alert runbooks",
             response_class=HTMLResponse)
    async def get_runbooks() -> HTMLResponse:
        path = settings.runbooks_path
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise HTTPException(status_code=404, detail=f"runbooks not found at {path}: "
                                                        f"{exc.strerror}") from None
        return HTMLResponse(runbooks.render(text))

    @app.get("/openapi.json", dependencies=[Protected], include_in_schema=False)
    async def openapi() -> dict:
        return app.openapi()

    @app.get("/docs", dependencies=[Protected], include_in_schema=False)
    async def docs() -> HTMLResponse:
        return docs_ui.swagger_page("/openapi.json", "CUGAr API - Swagger UI")

    @app.get("/redoc", dependencies=[Protected], include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return docs_ui.redoc_page("/openapi.json", "CUGAr API - ReDoc")

    @app.get(docs_ui.ASSETS_PATH + "/{name}", dependencies=[Protected], include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        return docs_ui.asset(name)

    app.include_router(alerts.router, dependencies=[Protected])
    # Every limited route's 429 counter exists from the start, at 0. The included router is one
    # opaque entry of app.routes; it has no prefix, so its own routes' paths are the app's.
    for route in [*app.routes, *alerts.router.routes]:
        if isinstance(route, APIRoute) and route.path != LIVENESS_PATH:
            metrics.rate_limited.labels(route=route.path)

    _instrument(app, tracer_provider)
    return app
