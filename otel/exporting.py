"""Getting telemetry out of the process without ever blocking the agent.

`SpanShipper` is a span processor with a bounded queue and one background worker; when the
queue is full spans are dropped and counted, never waited for. `MetricShipper` periodically
converts the pre-aggregated store to OTel metric data and exports it. Both count failures in
`Stats`, and shut down within a deadline even when the collector is unreachable.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel.catalogue import DROP_EXPORT_FAILED, DROP_QUEUE_FULL, DROP_SHUTDOWN
from otel.config import Settings
from otel.stats import Stats

log = logging.getLogger("otel")


def build_span_exporter(settings: Settings) -> SpanExporter:
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(
            endpoint=settings.traces_endpoint, insecure=settings.insecure,
            credentials=_grpc_credentials(settings, settings.traces_certificate),
            headers=settings.headers or None, timeout=settings.export_timeout_s)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    return Http(endpoint=settings.traces_endpoint, headers=settings.headers or None,
                timeout=settings.export_timeout_s, **_http_tls(settings.traces_certificate))


def build_metric_exporter(settings: Settings) -> MetricExporter:
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(
            endpoint=settings.metrics_endpoint, insecure=settings.insecure,
            credentials=_grpc_credentials(settings, settings.metrics_certificate),
            headers=settings.headers or None, timeout=settings.export_timeout_s)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as Http,
    )

    return Http(endpoint=settings.metrics_endpoint, headers=settings.headers or None,
                timeout=settings.export_timeout_s, **_http_tls(settings.metrics_certificate))


def _http_tls(certificate: str | None) -> dict:
    """OTLP/HTTP exporter arguments that make `certificate` (OTEL_EXPORTER_OTLP_*CERTIFICATE, from
    the settings' environment) the CA bundle that verifies the collector; {} for the defaults."""
    if not certificate:
        return {}
    import requests

    class CaPinnedSession(requests.Session):
        """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace a session's own `verify`
        (psf/requests#3829): the OTLP certificate the operator configured must win."""

        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
            merged["verify"] = self.verify
            return merged

    return {"certificate_file": certificate, "session": CaPinnedSession()}


def _grpc_credentials(settings: Settings, certificate: str | None):
    """TLS channel credentials trusting `certificate` (OTEL_EXPORTER_OTLP_*CERTIFICATE, read
    from the settings' environment, not the process's); None (plain channels, or no certificate
    configured) leaves the SDK's default. An unreadable file is logged and the system trust store
    is used instead (telemetry must not break the agent)."""
    if settings.insecure or not certificate:
        return None
    import grpc

    try:
        with open(certificate, "rb") as f:
            return grpc.ssl_channel_credentials(root_certificates=f.read())
    except OSError as exc:
        log.warning("OTLP certificate %s unreadable (%s); using the system trust store",
                    certificate, exc)
        return grpc.ssl_channel_credentials()


def _shutdown_exporter(exporter, timeout_s: float) -> None:
    try:
        try:
            exporter.shutdown(timeout_millis=max(0.0, timeout_s) * 1000)
        except TypeError:
            exporter.shutdown()
    except Exception:  # noqa: BLE001 - a broken exporter must not break shutdown
        log.debug("exporter shutdown failed", exc_info=True)


def _run_bounded(fn: Callable[[], object], timeout_s: float, name: str) -> bool:
    """Run `fn` in a helper thread; False when it did not finish in time (it keeps running)."""
    thread = threading.Thread(target=fn, name=name, daemon=True)
    thread.start()
    thread.join(max(0.0, timeout_s))
    return not thread.is_alive()


class _Worker:
    """A daemon thread that calls `tick()` every `interval_s` or when woken, until stopped."""

    def __init__(self, name: str, interval_s: float, tick: Callable[[], None]) -> None:
        self._interval_s = interval_s
        self._tick = tick
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._interval_s)
            self._wake.clear()
            if self._stopping:
                break
            self._tick()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop the loop (without waiting: a tick in progress finishes on its own)."""
        self._stopping = True
        self._wake.set()


class _Shipper:
    """Background export on a schedule, bounded flush and bounded shutdown.

    Subclasses implement `_flush_locked()`: export everything pending, True when delivered.
    """

    def __init__(self, name: str, exporter, stats: Stats, interval_s: float) -> None:
        self._name = name
        self._exporter = exporter
        self._stats = stats
        self._lock = threading.Lock()
        self._closed = False
        self._worker = _Worker(f"cugar-{name}-export", interval_s, self._flush)

    def _flush(self) -> bool:
        with self._lock:
            token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
            try:
                return self._flush_locked()
            finally:
                detach(token)

    def _flush_locked(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _export(self, data, size: int, ok, counter: str) -> bool:
        """One exporter call; failures (result or exception) are counted, never raised."""
        try:
            result = self._exporter.export(data)
            why = "exporter returned FAILURE (collector unreachable or refusing?)"
        except Exception as exc:  # noqa: BLE001 - exporters may raise on bad endpoints
            result, why = None, f"{type(exc).__name__}: {exc}"
        if result is ok:
            self._stats.add(counter, size)
            return True
        self._on_export_failed(size, why)
        return False

    def _on_export_failed(self, size: int, why: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _on_shutdown_timeout(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self._closed:
            return False
        outcome: list[bool] = []
        done = _run_bounded(lambda: outcome.append(self._flush()), timeout_millis / 1000,
                            f"cugar-{self._name}-flush")
        return done and all(outcome)

    def abandon(self) -> None:
        """Never export again (forked child: the data and the threads are the parent's)."""
        self._closed = True

    def shutdown(self, timeout_s: float = 5.0) -> None:
        if self._closed:
            return
        deadline = time.monotonic() + timeout_s
        self._closed = True
        self._worker.stop()
        if not _run_bounded(self._flush, timeout_s, f"cugar-{self._name}-flush"):
            self._on_shutdown_timeout()
        # Also interrupts an export still retrying against an unreachable collector.
        _shutdown_exporter(self._exporter, deadline - time.monotonic())


class SpanShipper(_Shipper, SpanProcessor):
    """Bounded-queue batching span processor that counts every span it loses."""

    def __init__(self, exporter: SpanExporter, stats: Stats, max_queue: int = 2048,
                 batch_size: int = 512, schedule_delay_s: float = 5.0,
                 redact: Callable[[ReadableSpan], ReadableSpan] | None = None) -> None:
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._redact = redact
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        super().__init__("span", exporter, stats, schedule_delay_s)

    # SpanProcessor interface: spans created through the OTel SDK tracer (other libraries).
    def on_start(self, span, parent_context=None) -> None:
        pass

    def _on_ending(self, span) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        try:
            self.ship(self._redact(span) if self._redact else span)
        except Exception:  # noqa: BLE001
            self._stats.add("internal_errors")

    def ship(self, span: ReadableSpan) -> None:
        """Queue a finished span; O(1), never blocks, drops (counted) when full."""
        queue = self._queue
        if self._closed:
            self._stats.loss("spans_dropped", 1, "span ended after shutdown", DROP_SHUTDOWN)
            return
        if len(queue) >= self._max_queue:
            self._stats.loss("spans_dropped", 1, "span export queue full", DROP_QUEUE_FULL)
            return
        queue.append(span)
        if len(queue) >= self._batch_size:
            self._worker.wake()

    def _flush_locked(self) -> bool:
        delivered = True
        while self._queue:
            batch = []
            while self._queue and len(batch) < self._batch_size:
                batch.append(self._queue.popleft())
            delivered = self._export(
                batch, len(batch), SpanExportResult.SUCCESS, "spans_exported") and delivered
        return delivered

    def _on_export_failed(self, size: int, why: str) -> None:
        self._stats.add("span_exports_failed")
        self._stats.loss("spans_export_failed", size, why, DROP_EXPORT_FAILED)

    def _on_shutdown_timeout(self) -> None:
        left = len(self._queue)
        self._queue.clear()
        if left:
            self._stats.loss("spans_dropped", left, "shutdown deadline reached before export",
                             DROP_SHUTDOWN)

    def queued(self) -> int:
        return len(self._queue)

    def abandon(self) -> None:
        super().abandon()
        self._queue.clear()


class MetricShipper(_Shipper):
    """Exports `collect()`'s metrics every interval, on flush and once more at shutdown."""

    def __init__(self, exporter: MetricExporter, stats: Stats, resource: Resource,
                 scope: InstrumentationScope, collect: Callable[[], list],
                 interval_s: float = 60.0) -> None:
        self._resource = resource
        self._scope = scope
        self._collect = collect
        super().__init__("metric", exporter, stats, interval_s)

    def _flush_locked(self) -> bool:
        try:
            metrics = self._collect()
        except Exception:  # noqa: BLE001 - collection bugs must not kill the worker
            self._stats.add("internal_errors")
            log.exception("metric collection failed")
            return False
        if not metrics:
            return True
        data = MetricsData([ResourceMetrics(
            self._resource, [ScopeMetrics(self._scope, metrics, "")], "")])
        return self._export(data, 1, MetricExportResult.SUCCESS, "metric_exports")

    def _on_export_failed(self, size: int, why: str) -> None:
        self._stats.loss("metric_exports_failed", 1, why)
