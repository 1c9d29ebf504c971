"""API configuration from the environment (OTEL_* for telemetry, CUGAR_* for the rest)."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from otel.config import is_http_url

from . import runbooks

DEFAULT_SERVICE_NAME = "cugar-api"


def _package_version() -> str:
    try:
        return metadata.version("cugar-telemetry")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"CUGAR_API_PORT must be a TCP port number (1-65535), got {text!r}")
    return int(text)


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = math.nan
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"CUGAR_API_RATE_LIMIT must be requests per second per client, a number "
                         f">= 0 (0 turns rate limiting off), got {text!r}")
    return rate


def _burst(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"CUGAR_API_RATE_BURST must be a whole number of requests >= 1, "
                         f"got {text!r}")
    return int(text)


def _url(name: str, text: str, base: bool = True) -> str:
    """`base`: a base URL, trailing slash dropped (paths are appended to it)."""
    text = text.strip().rstrip("/") if base else text.strip()
    if not is_http_url(text):
        raise ValueError(f"{name} must be an http:// or https:// URL with a host, e.g. "
                         f"http://127.0.0.1:9090, got {text!r}")
    return text


def _optional_url(name: str, text: str | None, base: bool = True) -> str | None:
    """Unset or empty: None (that dependency is not checked)."""
    return _url(name, text, base) if text and text.strip() else None


_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\Z")


def _host(text: str) -> str:
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        if _HOSTNAME.match(text):
            return text
    raise ValueError(f"CUGAR_API_HOST must be an IP address or a host name to bind, e.g. "
                     f"127.0.0.1 or 0.0.0.0, got {text!r}")


def _api_key(text: str | None) -> str | None:
    """Unset or empty: no key (the API is open). The value itself is never echoed."""
    if not text:
        return None
    if text != text.strip():
        raise ValueError("CUGAR_API_KEY must not be blank or start or end with whitespace "
                         f"(value not shown, {len(text)} characters); unset it for no key")
    return text


def _runbooks(text: str | None) -> Path:
    """Unset: the bundled docs/runbooks.md. Set: it must be a readable file."""
    if not text:
        return runbooks.DEFAULT_PATH
    path = Path(text)
    if not (path.is_file() and os.access(path, os.R_OK)):
        raise ValueError(f"CUGAR_RUNBOOKS_PATH must be a readable Markdown file, got {text!r} "
                         "(not found or not readable)")
    return path


@dataclass(frozen=True)
class Settings:
    prometheus_url: str = "http://127.0.0.1:9090"
    # None: no collector to check (embedded mode); readiness then only checks Prometheus.
    collector_health_url: str | None = "http://127.0.0.1:13133/"
    # The trace backend's query API (Jaeger); None: not checked (embedded mode).
    trace_backend_url: str | None = "http://127.0.0.1:16686"
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    service_name: str = DEFAULT_SERVICE_NAME
    version: str = _package_version()
    # Upper bound for one Prometheus / collector round trip; /dashboard answers 503 after it.
    upstream_timeout_s: float = 5.0
    # /health adds a metrics summary but must stay a fast, dependable liveness probe.
    health_summary_timeout_s: float = 1.0
    telemetry: bool = True
    # The Markdown served at /runbooks.
    runbooks_path: Path = runbooks.DEFAULT_PATH
    # Per client (valid API key, else address) and per worker; 0 turns the limit off. See
    # ratelimit.py.
    rate_limit: float = 20.0
    rate_burst: int = 40
    # Buckets kept per worker (least recently used dropped beyond): bounds the limiter's memory.
    rate_limit_clients: int = 10_000

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        return cls(
            prometheus_url=_url("CUGAR_PROMETHEUS_URL",
                                env.get("CUGAR_PROMETHEUS_URL", cls.prometheus_url)),
            collector_health_url=_optional_url(
                "CUGAR_COLLECTOR_HEALTH_URL",
                env.get("CUGAR_COLLECTOR_HEALTH_URL", cls.collector_health_url), base=False),
            trace_backend_url=_optional_url(
                "CUGAR_TRACE_BACKEND_URL", env.get("CUGAR_TRACE_BACKEND_URL", cls.trace_backend_url)),
            api_key=_api_key(env.get("CUGAR_API_KEY")),
            host=_host(env.get("CUGAR_API_HOST", cls.host)),
            port=_port(env.get("CUGAR_API_PORT", str(cls.port))),
            service_name=env.get("OTEL_SERVICE_NAME", DEFAULT_SERVICE_NAME),
            runbooks_path=_runbooks(env.get("CUGAR_RUNBOOKS_PATH")),
            rate_limit=_rate(env.get("CUGAR_API_RATE_LIMIT", f"{cls.rate_limit:g}")),
            rate_burst=_burst(env.get("CUGAR_API_RATE_BURST", str(cls.rate_burst))),
        )
