"""Jaeger v2 (our build of the pinned release) running monitoring/jaeger/config.yaml on loopback.

The shipped config is used as is; its CUGAR_JAEGER_* variables move every endpoint to
127.0.0.1 and a port of our choosing. Spans are read back through Jaeger's query API
(`/api/v3/traces`, OTLP JSON), which is what Grafana's Jaeger datasource and the UI use too.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from services.stack import components
from services.stack.components import REPO_ROOT
from services.stack.probe import flatten_spans, scrape
from services.stack.process import ManagedProcess, ProcessOwner, free_port

JAEGER_CONFIG = REPO_ROOT / "monitoring" / "jaeger" / "config.yaml"


class JaegerQueryError(RuntimeError):
    """Jaeger's query API did not answer as expected; the message says what it said."""


class Jaeger(ProcessOwner):
    """One Jaeger process; `start()` returns once its health check answers."""

    def __init__(self, workdir: str | Path, ports: Mapping[str, int] | None = None,
                 name: str = "jaeger") -> None:
        """`ports` fixes some of otlp_grpc, otlp_http, query_http (UI and API), query_grpc,
        telemetry, health; the rest are free ports."""
        self.workdir = Path(workdir).resolve()
        self.ports = {key: (ports or {}).get(key) or free_port() for key in (
            "otlp_grpc", "otlp_http", "query_http", "query_grpc", "telemetry", "health")}
        self.otlp_grpc_endpoint = f"127.0.0.1:{self.ports['otlp_grpc']}"
        self.query_url = f"http://127.0.0.1:{self.ports['query_http']}"
        self.health_url = f"http://127.0.0.1:{self.ports['health']}/status"
        self.telemetry_address = f"127.0.0.1:{self.ports['telemetry']}"
        self.telemetry_url = f"http://{self.telemetry_address}/metrics"
        self.process = ManagedProcess(
            name, [components.JAEGER.require(), "--config", str(JAEGER_CONFIG)],
            self.workdir / f"{name}.log", ready_url=self.health_url, env=self.env(),
            cwd=self.workdir)

    def env(self) -> dict[str, str]:
        p = self.ports
        return {
            "CUGAR_JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{p['otlp_grpc']}",
            "CUGAR_JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{p['otlp_http']}",
            "CUGAR_JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{p['query_http']}",
            "CUGAR_JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{p['query_grpc']}",
            "CUGAR_JAEGER_TELEMETRY_HOST": "127.0.0.1",
            "CUGAR_JAEGER_TELEMETRY_PORT": str(p["telemetry"]),
            "CUGAR_JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{p['health']}",
        }

    def version(self) -> str:
        """The release the running process reports (its own telemetry's `target_info`)."""
        for sample in scrape(self.telemetry_url):
            if sample.name == "target_info" and "service_version" in sample.labels:
                return sample.labels["service_version"].removeprefix("v")
        raise JaegerQueryError(f"{self.telemetry_url} has no target_info with service_version")

    # --- query API -------------------------------------------------------------------------
    def _get(self, path: str, params: dict[str, str] | None = None) -> dict:
        url = f"{self.query_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback)
                return json.load(resp)
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")[:500]
            if exc.code == 404 and "trace" in path:
                return {}  # no trace matched (Jaeger answers 404 "trace not found")
            raise JaegerQueryError(f"GET {url}: HTTP {exc.code}: {body}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise JaegerQueryError(f"GET {url}: {exc}") from None

    def services(self) -> list[str]:
        return list(self._get("/api/v3/services").get("services") or [])

    def spans(self, service: str, *, lookback_s: float = 3600, limit: int = 100000,
              operation: str | None = None) -> list[dict]:
        """Every span of `service`'s traces from the last `lookback_s` seconds (at most `limit`
        traces), flattened as services.stack.probe.flatten_spans does."""
        now = time.time()
        params = {
            "query.service_name": service,
            "query.start_time_min": _rfc3339(now - lookback_s),
            "query.start_time_max": _rfc3339(now + 60),
            "query.num_traces": str(limit),
        }
        if operation:
            params["query.operation_name"] = operation
        return flatten_spans(self._get("/api/v3/traces", params).get("result", {})
                             .get("resourceSpans") or [])

    def trace(self, trace_id: str) -> list[dict]:
        """The spans of one trace (hex id), flattened; empty when Jaeger has none."""
        return flatten_spans(self._get(f"/api/v3/traces/{trace_id}").get("result", {})
                             .get("resourceSpans") or [])


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"
