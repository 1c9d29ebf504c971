"""In-memory exporters and readers for tests (ours and other suites')."""

from __future__ import annotations

from typing import Any, Mapping

from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel.setup import Telemetry, create_telemetry


# Export intervals long enough that nothing exports on its own: tests flush explicitly.
QUIET_EXPORT_ENV: Mapping[str, str] = {"OTEL_METRIC_EXPORT_INTERVAL": "3600000",
                                       "OTEL_BSP_SCHEDULE_DELAY": "3600000"}


class CountingSpanExporter(SpanExporter):
    """Discards spans, counting them (floods, benchmarks: keeps no memory)."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class DiscardingMetricExporter(MetricExporter):
    """Accepts every export and keeps nothing."""

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


class InMemoryMetricExporter(DiscardingMetricExporter):
    """Keeps every exported batch; the last one holds the cumulative state."""

    def __init__(self) -> None:
        super().__init__()
        self.exports: list[MetricsData] = []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        self.exports.append(metrics_data)
        return MetricExportResult.SUCCESS


def in_memory_telemetry(env: Mapping[str, str] | None = None, **kwargs: Any
                        ) -> tuple[Telemetry, InMemorySpanExporter, InMemoryMetricExporter]:
    """An isolated handle exporting to memory (long intervals: tests flush explicitly)."""
    spans, metrics = InMemorySpanExporter(), InMemoryMetricExporter()
    tel = create_telemetry(env={**QUIET_EXPORT_ENV, **(env or {})}, span_exporter=spans,
                           metric_exporter=metrics, **kwargs)
    return tel, spans, metrics


def points(data: MetricsData | None) -> dict[str, dict[frozenset, Any]]:
    """{metric name: {frozenset(attributes): value}}; histograms give their data point."""
    out: dict[str, dict[frozenset, Any]] = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                series = out.setdefault(metric.name, {})
                for p in metric.data.data_points:
                    key = frozenset((p.attributes or {}).items())
                    series[key] = p if isinstance(p, HistogramDataPoint) else p.value
    return out


def last_points(exporter: InMemoryMetricExporter) -> dict[str, dict[frozenset, Any]]:
    return points(exporter.exports[-1] if exporter.exports else None)


def total(series: Mapping[frozenset, Any], **match: str) -> float:
    """Sum of a counter's values (or histogram counts) over series matching `match`."""
    result = 0.0
    for key, value in series.items():
        attrs = dict(key)
        if all(attrs.get(k) == v for k, v in match.items()):
            result += value.count if isinstance(value, HistogramDataPoint) else value
    return result


class OtlpReceiver:
    """A real OTLP endpoint on loopback (gRPC or HTTP/protobuf) that keeps what it receives."""

    def __init__(self, protocol: str = "grpc") -> None:
        import threading

        self.protocol = protocol
        self.trace_requests: list = []
        self.metric_requests: list = []
        self._lock = threading.Lock()
        if protocol == "grpc":
            self._start_grpc()
        else:
            self._start_http()

    @property
    def spans(self) -> list:
        with self._lock:
            return [s for r in self.trace_requests for rs in r.resource_spans
                    for ss in rs.scope_spans for s in ss.spans]

    def metric_names(self) -> set[str]:
        with self._lock:
            return {m.name for r in self.metric_requests for rm in r.resource_metrics
                    for sm in rm.scope_metrics for m in sm.metrics}

    def _keep(self, kind: str, request) -> None:
        with self._lock:
            (self.trace_requests if kind == "traces" else self.metric_requests).append(request)

    def _start_grpc(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        import grpc
        from opentelemetry.proto.collector.metrics.v1 import (
            metrics_service_pb2 as mpb,
            metrics_service_pb2_grpc as mgrpc,
        )
        from opentelemetry.proto.collector.trace.v1 import (
            trace_service_pb2 as tpb,
            trace_service_pb2_grpc as tgrpc,
        )

        receiver = self

        class Traces(tgrpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802 - gRPC API
                receiver._keep("traces", request)
                return tpb.ExportTraceServiceResponse()

        class Metrics(mgrpc.MetricsServiceServicer):
            def Export(self, request, context):  # noqa: N802
                receiver._keep("metrics", request)
                return mpb.ExportMetricsServiceResponse()

        self._server = grpc.server(ThreadPoolExecutor(max_workers=4))
        tgrpc.add_TraceServiceServicer_to_server(Traces(), self._server)
        mgrpc.add_MetricsServiceServicer_to_server(Metrics(), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{port}"

    def _start_http(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        receiver = self
        kinds = {"/v1/traces": ("traces", ExportTraceServiceRequest),
                 "/v1/metrics": ("metrics", ExportMetricsServiceRequest)}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path not in kinds:
                    self.send_response(404)
                    self.end_headers()
                    return
                kind, message = kinds[self.path]
                receiver._keep(kind, message.FromString(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self._http.server_address[1]}"

    def stop(self) -> None:
        if self.protocol == "grpc":
            self._server.stop(0)
        else:
            self._http.shutdown()
            self._http.server_close()
