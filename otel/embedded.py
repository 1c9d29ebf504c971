"""Embedded mode: serve the catalogue metrics at /metrics from inside the agent process.

For laptops without a collector. Series carry exactly the names and labels Prometheus stores
for the same data received over OTLP (`MetricSpec.prometheus_name`, attribute keys as
`catalogue.label_name`, resource attributes as `catalogue.RESOURCE_LABELS`), so queries,
rules and dashboards work unchanged on either path. The stock exporters translate names
their own way, so the exposition is rendered here: OpenMetrics 1.0 for a scraper that asks for
it (Prometheus does), with a `_created` sample per series so that Prometheus'
created-timestamp-zero-ingestion gives a series born inside a window its 0 start sample, as
OTLP's start time does; the classic text format (0.0.4) otherwise. Scrape it with
`honor_labels: true` (every series already carries `job` and `instance`). An internal error
answers 500, never a 200 with partial data.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.sdk.resources import Resource

from otel import catalogue
from otel.catalogue import Kind
from otel.metrics import MetricStore

log = logging.getLogger("otel")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _labels(pairs: list[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs) + "}"


@functools.lru_cache(maxsize=None)
def _le_values(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """The `le` label value of each bucket, +Inf last (computed once per bucket layout)."""
    return tuple(_number(b) for b in bounds) + ("+Inf",)


def resource_labels(resource: Resource) -> list[tuple[str, str]]:
    attrs = resource.attributes
    return [(label, str(attrs[key])) for key, label in catalogue.RESOURCE_LABELS.items()
            if key in attrs]


def render(store: MetricStore, resource: Resource, openmetrics: bool = False) -> str:
    """The exposition of every recorded catalogue series: text format 0.0.4, or OpenMetrics
    1.0 (family names without `_total`, a UNIT line, `_created` samples, `# EOF`)."""
    base = resource_labels(resource)
    created = _number(store.start_time_ns / 1e9)
    lines: list[str] = []
    for spec, points in store.snapshot():
        name = spec.prometheus_name
        histogram = spec.kind is Kind.HISTOGRAM
        family = name if histogram or not openmetrics else name.removesuffix("_total")
        lines.append(f"# HELP {family} {_escape_help(spec.description)}")
        lines.append(f"# TYPE {family} {spec.kind.value}")
        if openmetrics and spec.unit == "s":
            lines.append(f"# UNIT {family} seconds")
        les = _le_values(store.bounds[spec.name]) if histogram else ()
        for attrs, value in points:
            labels = _labels(base + [(catalogue.label_name(k), v) for k, v in attrs.items()])
            if not histogram:
                lines.append(f"{name}{labels} {_number(value)}")
            else:
                counts, total, count, _lo, _hi = value
                cumulative = 0
                for le_value, n in zip(les, counts):
                    cumulative += n
                    le = f'{labels[:-1]},le="{le_value}"}}' if labels else f'{{le="{le_value}"}}'
                    lines.append(f"{name}_bucket{le} {cumulative}")
                lines.append(f"{name}_sum{labels} {_number(total)}")
                lines.append(f"{name}_count{labels} {count}")
            if openmetrics:
                lines.append(f"{family}_created{labels} {created}")
    if openmetrics:
        lines.append("# EOF")
    return "\n".join(lines) + "\n"


class EmbeddedPrometheus:
    """A small threaded HTTP server answering GET /metrics (port 0 picks a free port)."""

    def __init__(self, store: MetricStore, resource: Resource, host: str, port: int) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path.split("?", 1)[0] != "/metrics":
                    self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics\n")
                    return
                openmetrics = "application/openmetrics-text" in self.headers.get("Accept", "")
                try:
                    body = render(outer._store, outer._resource, openmetrics).encode()
                except Exception:  # noqa: BLE001
                    log.exception("rendering /metrics failed")
                    self._send(500, "text/plain; charset=utf-8", b"internal error\n")
                    return
                self._send(200, OPENMETRICS_CONTENT_TYPE if openmetrics else CONTENT_TYPE, body)

            def _send(self, status: int, ctype: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes are not worth a log line each
                pass

        self._store = store
        self._resource = resource
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="cugar-embedded-prometheus", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
