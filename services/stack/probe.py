"""Tools for looking at the pipeline from the outside: a plain OpenTelemetry SDK sender (standing
for any OTLP-instrumented service, independent of our otel/ library), a parser for
the Prometheus text exposition, and a reader for the collector's OTLP-JSON trace file."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from services.stack.process import wait_until


@dataclass
class SdkSender:
    meter_provider: MeterProvider
    tracer_provider: TracerProvider


@contextmanager
def sdk_sender(endpoint: str, resource: Mapping[str, str], protocol: str = "grpc"
               ) -> Iterator[SdkSender]:
    """Meter and tracer providers exporting OTLP to `endpoint`; flushed and shut down on exit."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        metric_exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True)
        span_exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        metric_exporter = OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics")
        span_exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")
    res = Resource.create(dict(resource))
    meters = MeterProvider(resource=res, metric_readers=[
        PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)])
    tracers = TracerProvider(resource=res)
    tracers.add_span_processor(BatchSpanProcessor(span_exporter))
    try:
        yield SdkSender(meters, tracers)
    finally:
        _leave_the_millisecond()
        meters.shutdown()   # exports the final cumulative values
        tracers.shutdown()


def _leave_the_millisecond() -> None:
    """Wait for the clock's next millisecond. Prometheus stores a series' 0 start sample only when
    its start time (the first measurement) is older than its first sample; a sender that counts
    and exports within one millisecond would otherwise lose its whole first increase."""
    now_ms = time.time_ns() // 1_000_000
    wait_until(lambda: time.time_ns() // 1_000_000 > now_ms, timeout=1, interval=0.001,
               what="the next millisecond")


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r'\\(.)')
_UNESCAPED = {"\\": "\\", '"': '"', "n": "\n"}


def _unescape(value: str) -> str:
    """A label value as written in the text format: \\\\, \\" and \\n are its escapes."""
    return _ESCAPE.sub(lambda m: _UNESCAPED.get(m.group(1), m.group(0)), value)


def parse_exposition(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition (comments skipped)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, rest = line.split("{", 1)
            labels_text, _, value = rest.rpartition("}")
            labels = {k: _unescape(v) for k, v in _LABEL.findall(labels_text)}
        else:
            name, value = line.split(" ", 1)
            labels = {}
        samples.append(Sample(name.strip(), labels, float(value.split()[0])))
    return samples


def scrape(url: str) -> list[Sample]:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (loopback)
        return parse_exposition(resp.read().decode())


def read_spans(path: Path) -> list[dict[str, Any]]:
    """Spans from the file exporter's OTLP-JSON lines (see flatten_spans)."""
    spans: list[dict[str, Any]] = []
    if not path.exists():
        return spans
    for line in path.read_text().splitlines():
        if line.strip():
            spans += flatten_spans(json.loads(line).get("resourceSpans", []))
    return spans


def flatten_spans(resource_spans: list[dict]) -> list[dict[str, Any]]:
    """Every span of OTLP-JSON `resourceSpans` (the file exporter's lines, Jaeger's
    /api/v3/traces), each with its resource attributes (`resource`) and its own attributes
    flattened to {key: value} (`attrs`, and `attrs` on each of its `events`)."""
    spans: list[dict[str, Any]] = []
    for rs in resource_spans:
        resource = attributes(rs.get("resource", {}).get("attributes", []))
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                spans.append({**span, "resource": resource,
                              "attrs": attributes(span.get("attributes", [])),
                              "events": [{**e, "attrs": attributes(e.get("attributes", []))}
                                         for e in span.get("events", [])]})
    return spans


def _value(value: dict) -> Any:
    kind, raw = next(iter(value.items()), (None, None))
    if kind == "intValue":
        return int(raw)
    if kind == "arrayValue":  # e.g. gen_ai.response.finish_reasons
        return [_value(v) for v in (raw or {}).get("values", [])]
    return raw


def attributes(items: list[dict]) -> dict[str, Any]:
    """OTLP-JSON key/value list -> dict (intValue arrives as a string in OTLP JSON, arrays
    become lists)."""
    return {item["key"]: _value(item.get("value") or {}) for item in items}
