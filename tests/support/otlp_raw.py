"""Raw OTLP requests, built from opentelemetry-proto's messages and sent without any SDK.

Used by the overload and bad-input tests: a sender that is not our library (no queue, no
retry, no validation), so the collector sees exactly the bytes we choose.

    python -m tests.support.otlp_raw blast --endpoint 127.0.0.1:4317 --duration 10 ...

runs one load process: `--threads` threads each sending the same pre-serialized trace export
request over gRPC as fast as the collector answers, then prints one JSON line of counts per
gRPC status code (OK, UNAVAILABLE, ...) and spans sent/accepted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter

import grpc
import httpx
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


def attr(key: str, value: str | int | float | bool) -> common_pb2.KeyValue:
    if isinstance(value, bool):
        any_value = common_pb2.AnyValue(bool_value=value)
    elif isinstance(value, int):
        any_value = common_pb2.AnyValue(int_value=value)
    elif isinstance(value, float):
        any_value = common_pb2.AnyValue(double_value=value)
    else:
        any_value = common_pb2.AnyValue(string_value=value)
    return common_pb2.KeyValue(key=key, value=any_value)


def resource(service: str, instance: str | None = None) -> resource_pb2.Resource:
    attrs = [attr("service.name", service)]
    if instance:
        attrs.append(attr("service.instance.id", instance))
    return resource_pb2.Resource(attributes=attrs)


def trace_request(service: str, spans: int, attribute_bytes: int = 64,
                  seed: int = 0) -> trace_service_pb2.ExportTraceServiceRequest:
    """`spans` spans of one service, each with one string attribute of `attribute_bytes`."""
    now = time.time_ns()
    filler = "x" * attribute_bytes
    out = []
    for i in range(spans):
        n = seed * 1_000_000 + i + 1
        out.append(trace_pb2.Span(
            trace_id=n.to_bytes(16, "big"), span_id=n.to_bytes(8, "big"), name="raw-load",
            kind=trace_pb2.Span.SPAN_KIND_INTERNAL, start_time_unix_nano=now - 1_000_000,
            end_time_unix_nano=now, attributes=[attr("load.filler", filler)]))
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=resource(service), scope_spans=[trace_pb2.ScopeSpans(spans=out)])])


def metrics_request(service: str, metrics: list[metrics_pb2.Metric],
                    instance: str | None = None) -> metrics_service_pb2.ExportMetricsServiceRequest:
    return metrics_service_pb2.ExportMetricsServiceRequest(resource_metrics=[
        metrics_pb2.ResourceMetrics(resource=resource(service, instance),
                                    scope_metrics=[metrics_pb2.ScopeMetrics(metrics=metrics)])])


def push_counter(url: str, service: str, instance: str, name: str, unit: str,
                 points: list[tuple[float, int]], start: float,
                 attributes: dict[str, str] | None = None) -> list[httpx.Response]:
    """One OTLP/HTTP export per (time, value) point of a cumulative counter `name` to `url`
    (a Prometheus OTLP receiver), each with `start` as the series' start time; the responses."""
    answers = []
    for t, value in points:
        point = metrics_pb2.NumberDataPoint(
            time_unix_nano=int(t * 1e9), start_time_unix_nano=int(start * 1e9), as_int=value,
            attributes=[attr(k, v) for k, v in (attributes or {}).items()])
        metric = metrics_pb2.Metric(name=name, unit=unit, sum=metrics_pb2.Sum(
            data_points=[point], is_monotonic=True,
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE))
        answers.append(httpx.post(url, content=metrics_request(service, [metric], instance)
                                  .SerializeToString(),
                                  headers={"Content-Type": "application/x-protobuf"}, timeout=10))
    return answers


def grpc_call(channel: grpc.Channel, method: str):
    """A unary call that sends bytes as they are (no client-side serialization)."""
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


def blast(endpoint: str, duration_s: float, threads: int, spans: int, attribute_bytes: int,
          service: str, timeout_s: float = 5.0) -> dict:
    """Send one trace request over and over from `threads` threads for `duration_s`."""
    body = trace_request(service, spans, attribute_bytes, seed=os.getpid()).SerializeToString()
    options = [("grpc.max_send_message_length", 64 * 2**20)]
    codes: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + duration_s

    def loop() -> None:
        with grpc.insecure_channel(endpoint, options=options) as channel:
            call = grpc_call(channel, TRACES_METHOD)
            while time.monotonic() < deadline:
                try:
                    call(body, timeout=timeout_s)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                    if code in ("UNAVAILABLE", "RESOURCE_EXHAUSTED"):
                        time.sleep(0.05)  # a refusing collector: back off a little, as SDKs do
                with lock:
                    codes[code] += 1

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(duration_s + timeout_s + 10)
    return {"codes": dict(codes), "spans_sent": spans * sum(codes.values()),
            "spans_accepted": spans * codes["OK"], "request_bytes": len(body)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.otlp_raw")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("blast", help="send trace requests as fast as the collector answers")
    b.add_argument("--endpoint", required=True, help="host:port of an OTLP/gRPC receiver")
    b.add_argument("--duration", type=float, required=True)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--spans", type=int, default=1000, help="spans per request")
    b.add_argument("--attribute-bytes", type=int, default=256)
    b.add_argument("--service", default="raw-load")
    args = parser.parse_args(argv)
    result = blast(args.endpoint.removeprefix("http://"), args.duration, args.threads,
                   args.spans, args.attribute_bytes, args.service)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
