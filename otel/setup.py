"""`setup_telemetry()`: one call that wires the SDK, exporters and the agent API together."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from typing import Any, Mapping

from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import Status
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.sdk.version import __version__ as sdk_version

from otel import catalogue, privacy
from otel.agent import AgentTelemetry
from otel.config import ConfigError, Settings, load_settings
from otel.core import Core
from otel.exporting import MetricShipper, SpanShipper, build_metric_exporter, build_span_exporter
from otel.metrics import AgentMetrics
from otel.spans import FastTracer
from otel.stats import Stats, quiet_exporter_logs

log = logging.getLogger("otel")

SCOPE = InstrumentationScope(catalogue.INSTRUMENTATION_SCOPE, "0.1.0")


def build_resource(settings: Settings) -> Resource:
    # Built explicitly (not Resource.create) so that `env=` overrides fully decide it. Resource
    # attributes (OTEL_RESOURCE_ATTRIBUTES) are redacted like any other: Prometheus shows them
    # on target_info and Jaeger on every span.
    return Resource({
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": sdk_version,
        **privacy.redact_attributes(settings.resource_attributes),
    })


def _redact_foreign_span(span: ReadableSpan) -> ReadableSpan:
    """Spans from other instrumentation (e.g. FastAPI) get the same redaction as ours."""
    attrs = privacy.redact_attributes(span.attributes)
    events = [type(e)(e.name, privacy.redact_attributes(e.attributes), e.timestamp)
              for e in span.events]
    status = span.status
    if status.description:
        status = Status(status.status_code, privacy.redact_text(status.description))
    return ReadableSpan(
        privacy.redact_text(span.name), span.context, span.parent, span.resource, attrs,
        [type(e)(privacy.redact_text(e.name), e.attributes, e.timestamp) for e in events],
        [type(link)(link.context, privacy.redact_attributes(link.attributes))
         for link in span.links],
        span.kind, None, status, span.start_time, span.end_time,
        span.instrumentation_scope)


class Telemetry:
    """The live telemetry handle returned by `setup_telemetry()` and `create_telemetry()`.

        tel = setup_telemetry(service_name="cugar-sales")
        with tel.agent.execution(profile="smb") as ex: ...
        tel.shutdown()

    `agent` is the agent API, `tracer_provider` and `meter_provider` serve other
    OpenTelemetry instrumentation. No method raises for telemetry problems.
    """

    def __init__(self, settings: Settings, span_exporter: SpanExporter | None = None,
                 metric_exporter: MetricExporter | None = None) -> None:
        self.settings = settings
        self.resource = build_resource(settings)
        self._stats = Stats()
        self._closed = False
        self._lock = threading.Lock()
        self.metrics = AgentMetrics(exemplar_filter=settings.exemplar_filter)
        self._span_shipper: SpanShipper | None = None
        self._metric_shipper: MetricShipper | None = None
        self._sdk_reader: InMemoryMetricReader | None = None
        self.embedded = None
        if settings.disabled:
            self.tracer_provider = trace_api.NoOpTracerProvider()
            self.meter_provider = metrics_api.NoOpMeterProvider()
            self.agent = AgentTelemetry(None)
            return

        quiet_exporter_logs()
        _abandon_in_forked_child(self)
        tracer = None
        self.tracer_provider = TracerProvider(resource=self.resource, sampler=settings.sampler)
        self._count_span_drops()
        if settings.traces_enabled:
            self._span_shipper = SpanShipper(
                span_exporter or build_span_exporter(settings), self._stats,
                settings.span_queue_size, settings.span_batch_size,
                settings.span_schedule_delay_s, redact=_redact_foreign_span)
            self.tracer_provider.add_span_processor(self._span_shipper)
            tracer = FastTracer(self.resource, SCOPE, settings.sampler, self._span_shipper.ship)

        # Instruments created through the SDK by other code (e.g. FastAPI instrumentation)
        # are collected on our export schedule and shipped in the same batches as ours.
        self._sdk_reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(resource=self.resource,
                                            metric_readers=[self._sdk_reader])
        if settings.metrics_enabled:
            self._metric_shipper = MetricShipper(
                metric_exporter or build_metric_exporter(settings), self._stats, self.resource,
                SCOPE, self._collect_metrics, settings.metric_export_interval_s)

        self.agent = AgentTelemetry(Core(settings, self.metrics, tracer, self._stats))
        if settings.embedded_prometheus_port is not None:
            from otel.embedded import EmbeddedPrometheus

            try:
                self.embedded = EmbeddedPrometheus(
                    self.metrics, self.resource, settings.embedded_prometheus_host,
                    settings.embedded_prometheus_port)
            except OSError as exc:  # e.g. port in use: keep everything else working
                log.warning("embedded Prometheus endpoint on %s:%s unavailable: %s",
                            settings.embedded_prometheus_host,
                            settings.embedded_prometheus_port, exc)

    def _count_span_drops(self) -> None:
        """Discarded spans (tel.stats()) also count in cugar.telemetry.dropped, from 0 (also
        with traces off: such a process truthfully reports that it dropped nothing)."""
        metrics, signal = self.metrics, catalogue.TELEMETRY_SIGNALS[0]
        for reason in catalogue.DROP_REASONS:
            metrics.add(catalogue.TELEMETRY_DROPPED, (signal, reason), 0)
        self._stats.on_drop = lambda reason, n: metrics.add(
            catalogue.TELEMETRY_DROPPED, (signal, reason), n)

    def _abandon(self) -> None:
        """In a forked child: the export threads are gone and the data is the parent's."""
        self._closed = True
        for shipper in (self._span_shipper, self._metric_shipper):
            if shipper is not None:
                shipper.abandon()
        self.embedded = None
        self.agent._core = None  # inherited handles record nothing; see docs/library.md

    def _collect_metrics(self) -> list:
        """Our catalogue metrics plus whatever SDK instruments recorded, as one scope list."""
        metrics = self.metrics.to_sdk_metrics()
        sdk_data = self._sdk_reader.get_metrics_data() if self._sdk_reader else None
        if sdk_data is not None:
            for rm in sdk_data.resource_metrics:
                for sm in rm.scope_metrics:
                    metrics.extend(sm.metrics)
        return metrics

    @property
    def prometheus_url(self) -> str | None:
        """URL of the embedded /metrics endpoint, when embedded mode is on."""
        return self.embedded.url if self.embedded is not None else None

    def force_flush(self, timeout_millis: int = 5000) -> bool:
        """Export everything recorded so far; False when it could not within the timeout."""
        if self._closed:
            return False
        ok = True
        if self._span_shipper is not None:
            ok = self._span_shipper.force_flush(timeout_millis) and ok
        if self._metric_shipper is not None:
            ok = self._metric_shipper.force_flush(timeout_millis) and ok
        return ok

    def shutdown(self) -> None:
        """Flush and stop, within `CUGAR_SHUTDOWN_TIMEOUT_MS` even when the collector is down."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        timeout = self.settings.shutdown_timeout_s
        try:
            if self._span_shipper is not None:
                self._span_shipper.shutdown(timeout / 2)
            if self._metric_shipper is not None:
                self._metric_shipper.shutdown(timeout / 2)
            if self.embedded is not None:
                self.embedded.stop()
        except Exception:  # noqa: BLE001 - shutdown must never raise into the caller
            log.warning("telemetry shutdown failed", exc_info=True)
        _forget(self)

    def stats(self) -> dict[str, Any]:
        """Counted losses and a few gauges (queue depth, series, label overflow)."""
        out: dict[str, Any] = self._stats.snapshot()
        out["spans_queued"] = self._span_shipper.queued() if self._span_shipper else 0
        out["metric_series"] = self.metrics.series_count()
        core = self.agent._core
        out["labels_overflowed"] = (core.tools.overflowed + core.error_types.overflowed
                                    if core is not None else 0)
        return out


_ACTIVE: Telemetry | None = None
_ACTIVE_LOCK = threading.Lock()
_GLOBALS_SET = False


def _forget(tel: Telemetry) -> None:
    global _ACTIVE
    with _ACTIVE_LOCK:
        if _ACTIVE is tel:
            _ACTIVE = None


def _abandon_in_forked_child(tel: Telemetry) -> None:
    """A forked child must neither re-export the parent's data nor wait on dead threads;
    it calls setup_telemetry() again for its own handle."""
    if not hasattr(os, "register_at_fork"):
        return
    ref = weakref.ref(tel)

    def after_in_child() -> None:
        global _ACTIVE
        _ACTIVE = None
        handle = ref()
        if handle is not None:
            handle._abandon()

    os.register_at_fork(after_in_child=after_in_child)


def create_telemetry(service_name: str | None = None, service_version: str | None = None,
                     embedded_prometheus_port: int | None = None, *,
                     env: Mapping[str, str] | None = None,
                     span_exporter: SpanExporter | None = None,
                     metric_exporter: MetricExporter | None = None,
                     resource_attributes: Mapping[str, str] | None = None) -> Telemetry:
    """An independent handle that does not touch process-wide state (tests, benchmarks).

        tel = create_telemetry(env={"OTEL_TRACES_EXPORTER": "none"},
                               metric_exporter=InMemoryMetricExporter())

    - `service_name`, `service_version`: defaults for service.name / service.version;
      `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` win over them.
    - `embedded_prometheus_port`: serve /metrics on this port (0: any free port; None: off,
      unless `CUGAR_EMBEDDED_PROMETHEUS_PORT` is set).
    - `env`: the variables to read instead of `os.environ`.
    - `span_exporter`, `metric_exporter`: replace the OTLP exporters.
    - `resource_attributes`: added to (and overriding) the resource from `env`.

    A variable with a value it cannot use raises `ConfigError` (a `ValueError` naming each such
    variable, its value and what is accepted); an unexpected setup error propagates here too
    (`setup_telemetry` catches that one and returns a disabled handle).
    """
    settings = load_settings(env, service_name, service_version, embedded_prometheus_port)
    if resource_attributes:
        settings.resource_attributes.update(resource_attributes)
    return Telemetry(settings, span_exporter, metric_exporter)


def setup_telemetry(service_name: str | None = None, service_version: str | None = None,
                    embedded_prometheus_port: int | None = None,
                    **overrides: Any) -> Telemetry:
    """Initialise telemetry for this process from OTEL_* variables; returns the live handle.

        tel = setup_telemetry(service_name="cugar-sales", service_version="1.4.0")
        with tel.agent.execution(profile="smb", agent_name="cugar-sales") as ex: ...
        tel.shutdown()  # also runs at exit

    - `service_name`, `service_version`: defaults for service.name / service.version;
      `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` win over them.
    - `embedded_prometheus_port`: serve /metrics in-process on this port (0: any free
      port; None: off, unless `CUGAR_EMBEDDED_PROMETHEUS_PORT` is set).
    - `overrides`: `create_telemetry`'s keyword arguments (`env`, `span_exporter`,
      `metric_exporter`, `resource_attributes`).

    Safe to call twice (the second call returns the first handle, ignoring the arguments).
    Registers the SDK tracer and meter providers globally so other OpenTelemetry
    instrumentation uses them too. A bad variable value is a configuration error the operator
    must see: it raises `ConfigError` (a `ValueError` naming the variable, the value and what
    is accepted), at start. Nothing else raises: on any other setup failure it logs and
    returns a disabled handle, and the handle never raises afterwards.
    """
    global _ACTIVE, _GLOBALS_SET
    with _ACTIVE_LOCK:
        if _ACTIVE is not None:
            return _ACTIVE
        try:
            tel = create_telemetry(service_name, service_version, embedded_prometheus_port,
                                   **overrides)
        except ConfigError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("telemetry setup failed; continuing with telemetry disabled")
            tel = create_telemetry(env={"OTEL_SDK_DISABLED": "true"})
        if not _GLOBALS_SET and not tel.settings.disabled:
            trace_api.set_tracer_provider(tel.tracer_provider)
            metrics_api.set_meter_provider(tel.meter_provider)
            _GLOBALS_SET = True
        _ACTIVE = tel
        atexit.register(tel.shutdown)
        return tel
