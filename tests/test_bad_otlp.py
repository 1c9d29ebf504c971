"""Malformed, oversized and semantically broken OTLP against our collector build (the product
otel-collector-config.yaml through the harness) with real Prometheus, while a well-behaved
sender (our agent, OTLP/gRPC) runs: every bad request gets the status the pinned collector
(v0.161.0) answers with (docs/pipeline.md#limits-and-bad-input), the collector keeps serving,
and the well-behaved sender loses nothing: Prometheus counts exactly its ground truth, every
span it exported arrived, and its tel.stats() counts no loss.

Mutation checks: with `max_request_body_size` raised to 128 MiB the oversized and gzip-bomb
HTTP requests are accepted (200) and test_bad_requests_get_the_documented_status fails; without
filter/invalid in the metrics pipeline test_invalid_points_are_dropped_and_counted fails.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest

from services.stack import components
from services.stack.pipeline import Pipeline
from services.stack.probe import scrape
from tests.support import otlp_raw as raw
from tests.support import require
from tests.support.promql import alert_expr
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]

GOOD_SERVICE = "well-behaved"
BAD_SERVICE = "bad-sender"
LIMIT_BYTES = 16 * 2**20  # both receivers, otel-collector-config.yaml
PB, JSON = "application/x-protobuf", "application/json"
GARBAGE = b"\xff\x00\x13garbage, not protobuf"
ROUNDS, MAX_ROUNDS = 2, 8


def _good_traces() -> bytes:
    return raw.trace_request(BAD_SERVICE, 2).SerializeToString()


def _oversized() -> bytes:
    return raw.trace_request(BAD_SERVICE, 1, attribute_bytes=LIMIT_BYTES + 2**20).SerializeToString()


def _bomb_plain() -> bytes:
    """64 MiB of one valid request (a zero-filled attribute): gzip makes it about 64 KiB."""
    return raw.trace_request(BAD_SERVICE, 1, attribute_bytes=64 * 2**20).SerializeToString()


WRONG_JSON_METRICS = json.dumps({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
    {"name": "cugar.executions", "sum": {"dataPoints": [{"asInt": "many"}]}}]}]}]}).encode()

# name, method, path, body (callable), content type, extra headers, expected HTTP status
HTTP_CASES = [
    ("garbage protobuf", "POST", "/v1/traces", lambda: GARBAGE, PB, {}, 400),
    ("garbage JSON", "POST", "/v1/metrics", lambda: b"{not json", JSON, {}, 400),
    ("wrong content type", "POST", "/v1/traces", _good_traces, "text/plain", {}, 415),
    ("no content type", "POST", "/v1/metrics", _good_traces, None, {}, 415),
    ("wrong JSON type (object for list)", "POST", "/v1/traces",
     lambda: b'{"resourceSpans": "nope"}', JSON, {}, 400),
    ("wrong JSON type (string for int)", "POST", "/v1/metrics", lambda: WRONG_JSON_METRICS,
     JSON, {}, 400),
    ("GET", "GET", "/v1/traces", lambda: b"", PB, {}, 405),
    ("unknown path", "POST", "/v1/everything", _good_traces, PB, {}, 404),
    ("oversized body (17 MiB)", "POST", "/v1/traces", _oversized, PB, {}, 400),
    ("gzip bomb (64 KiB -> 64 MiB)", "POST", "/v1/traces", lambda: gzip.compress(_bomb_plain()),
     PB, {"Content-Encoding": "gzip"}, 400),
    ("corrupt gzip", "POST", "/v1/traces", lambda: b"\x1f\x8bnot really gzip", PB,
     {"Content-Encoding": "gzip"}, 400),
    ("unknown content encoding", "POST", "/v1/traces", _good_traces, PB,
     {"Content-Encoding": "zip-of-doom"}, 400),
]

# name, method, body (callable), compression, expected gRPC status
GRPC_CASES = [
    ("garbage traces", raw.TRACES_METHOD, lambda: GARBAGE, None, "INTERNAL"),
    ("garbage metrics", raw.METRICS_METHOD, lambda: GARBAGE, None, "INTERNAL"),
    ("oversized message (17 MiB)", raw.TRACES_METHOD, _oversized, None, "RESOURCE_EXHAUSTED"),
    ("gzip bomb (64 KiB -> 64 MiB)", raw.TRACES_METHOD, _bomb_plain, grpc.Compression.Gzip,
     "RESOURCE_EXHAUSTED"),
    ("unknown method", "/opentelemetry.proto.collector.trace.v1.TraceService/Import",
     _good_traces, None, "UNIMPLEMENTED"),
]

CUMULATIVE = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = pb.AGGREGATION_TEMPORALITY_DELTA


def _counter(value: float, profile: str, temporality: int = CUMULATIVE) -> pb.Metric:
    now = time.time_ns()
    point = pb.NumberDataPoint(
        attributes=[raw.attr("outcome", "success"), raw.attr("profile", profile)],
        start_time_unix_nano=now - 10**9, time_unix_nano=now, as_double=value)
    return pb.Metric(name="cugar.executions", unit="{execution}", sum=pb.Sum(
        data_points=[point], aggregation_temporality=temporality, is_monotonic=True))


def _histogram(counts: list[int], bounds: list[float], total: float = 1.0) -> pb.Metric:
    now = time.time_ns()
    point = pb.HistogramDataPoint(
        attributes=[raw.attr("outcome", "success"), raw.attr("profile", "smb")],
        start_time_unix_nano=now - 10**9, time_unix_nano=now, count=sum(counts), sum=total,
        bucket_counts=counts, explicit_bounds=bounds)
    return pb.Metric(name="cugar.execution.duration", unit="s", histogram=pb.Histogram(
        data_points=[point], aggregation_temporality=CUMULATIVE))


# Well-formed OTLP with points no series should hold, each as its own instance of the bad
# sender: the collector accepts all of it (200) and filter/invalid drops these points, counted.
INVALID_POINTS = {
    "nan": [_counter(float("nan"), "smb")],
    "inf": [_counter(float("inf"), "demo")],
    "negative": [_counter(-5.0, "technical")],
    "delta": [_counter(3.0, "enterprise", DELTA)],
    "buckets-short": [_histogram([1, 2, 3], [0.1, 0.5, 1.0, 5.0])],
    "buckets-long": [_histogram([1, 2, 3, 4, 5, 6], [0.1, 0.5])],
    "histogram-nan-sum": [_histogram([1, 2, 3], [0.1, 0.5], total=float("nan"))],
}
# The same shapes with valid values pass (a gauge may be negative).
VALID_POINTS = {
    "ok-counter": [_counter(7.0, "smb")],
    "ok-histogram": [_histogram([1, 2, 3], [0.1, 0.5])],
    "ok-gauge": [pb.Metric(name="bad.sender.temperature", unit="Cel", gauge=pb.Gauge(
        data_points=[pb.NumberDataPoint(time_unix_nano=time.time_ns(), as_double=-3.5)]))],
}
POINT_CASES = {**INVALID_POINTS, **VALID_POINTS}


def send_http(endpoint: str, method: str, path: str, body: bytes, content_type: str | None,
              headers: dict) -> int:
    all_headers = {**({"Content-Type": content_type} if content_type else {}), **headers}
    return httpx.request(method, endpoint + path, content=body, headers=all_headers,
                         timeout=60).status_code


def send_grpc(channel: grpc.Channel, method: str, body: bytes, compression) -> str:
    try:
        raw.grpc_call(channel, method)(body, timeout=60, compression=compression)
        return "OK"
    except grpc.RpcError as exc:
        return exc.code().name


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory: pytest.TempPathFactory):
    for component in (components.COLLECTOR, components.PROMETHEUS):
        require(component)
    with Pipeline(tmp_path_factory.mktemp("bad-otlp"), alertmanager=False, jaeger=False) as p:
        env = {**os.environ, **p.agent_env(protocol="grpc"), "OTEL_SERVICE_NAME": GOOD_SERVICE}
        agent = subprocess.Popen(
            [sys.executable, "-m", "services.agent", "run", "--rate", "8", "--duration", "8",
             "--time-scale", "0.5", "--seed", "8"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        http_seen: dict[str, set[int]] = {c[0]: set() for c in HTTP_CASES}
        grpc_seen: dict[str, set[str]] = {c[0]: set() for c in GRPC_CASES}
        point_status: dict[str, int] = {}
        grpc_target = p.otlp_grpc_endpoint.removeprefix("http://")
        options = [("grpc.max_send_message_length", 128 * 2**20)]
        try:
            with grpc.insecure_channel(grpc_target, options=options) as channel:
                rounds = 0  # at least ROUNDS, and on while the agent plays its executions
                while rounds < ROUNDS or (agent.poll() is None and rounds < MAX_ROUNDS):
                    rounds += 1
                    for name, method, path, body, ctype, headers, _ in HTTP_CASES:
                        http_seen[name].add(send_http(p.otlp_http_endpoint, method, path,
                                                      body(), ctype, headers))
                    for name, method, body, compression, _ in GRPC_CASES:
                        grpc_seen[name].add(send_grpc(channel, method, body(), compression))
            for case, metrics in POINT_CASES.items():
                request = raw.metrics_request(BAD_SERVICE, metrics, instance=f"{BAD_SERVICE}-{case}")
                point_status[case] = send_http(p.otlp_http_endpoint, "POST", "/v1/metrics",
                                               request.SerializeToString(), PB, {})
            out, err = agent.communicate(timeout=180)
        finally:
            if agent.poll() is None:
                agent.kill()
        yield {"pipeline": p, "http": http_seen, "grpc": grpc_seen, "points": point_status,
               "agent_code": agent.returncode, "summary": json.loads(out.splitlines()[-1]),
               "stderr": err}


def test_bad_requests_get_the_documented_status(bad_run) -> None:
    wrong = {name: seen for name, *_, expected in HTTP_CASES
             if (seen := bad_run["http"][name]) != {expected}}
    wrong |= {f"grpc {name}": seen for name, *_, expected in GRPC_CASES
              if (seen := bad_run["grpc"][name]) != {expected}}
    assert not wrong, f"statuses other than documented: {wrong}"


def test_collector_keeps_serving(bad_run) -> None:
    p = bad_run["pipeline"]
    assert p.process("collector").running()
    assert httpx.get(p.collector_health_url, timeout=5).status_code == 200
    assert send_http(p.otlp_http_endpoint, "POST", "/v1/traces", _good_traces(), PB, {}) == 200
    with grpc.insecure_channel(p.otlp_grpc_endpoint.removeprefix("http://")) as channel:
        assert send_grpc(channel, raw.TRACES_METHOD, _good_traces(), None) == "OK"


def test_well_behaved_sender_loses_nothing(bad_run) -> None:
    p, truth = bad_run["pipeline"], bad_run["summary"]
    assert bad_run["agent_code"] == 0, bad_run["stderr"][-2000:]
    assert "Traceback" not in bad_run["stderr"]
    stats = ast.literal_eval(re.findall(r"; telemetry (\{.*\})$", bad_run["stderr"], re.M)[-1])
    assert {k: stats[k] for k in ("spans_dropped", "spans_export_failed",
                                  "metric_exports_failed", "internal_errors")} == dict.fromkeys(
        ("spans_dropped", "spans_export_failed", "metric_exports_failed", "internal_errors"), 0)
    sel = f'{{job="{GOOD_SERVICE}"}}'
    expected = {"executions": truth["executions"], "successful": truth["successful"],
                "calls": truth["tool_calls"]}

    def counts(_r) -> bool:
        got = {"executions": _sum(p, f"sum(cugar_executions_total{sel})"),
               "successful": _sum(p, f'sum(cugar_executions_total{{job="{GOOD_SERVICE}",'
                                     f'outcome="success"}})'),
               "calls": _sum(p, f"sum(cugar_tool_calls_total{sel})")}
        counts.last = got
        return got == expected

    try:
        p.wait_for("vector(1)", counts, timeout=30)
    except TimeoutError:
        pytest.fail(f"Prometheus counts {counts.last}, the sender counted {expected}")
    spans = [s for s in p.spans(GOOD_SERVICE)]
    assert len(spans) == stats["spans_exported"] > 0


def _sum(p: Pipeline, promql: str) -> float | None:
    result = p.query(promql)
    return float(result[0]["value"][1]) if result else None


def test_invalid_points_are_dropped_and_counted(bad_run) -> None:
    """NaN / Inf values, a negative monotonic sum, delta sums, histograms whose bucket counts do
    not match their bounds or whose sum is NaN: without filter/invalid Prometheus stores the
    first ones as they are, cuts the buckets to the shorter list and answers the delta with
    HTTP 500 (docs/pipeline.md#limits-and-bad-input). With it they are dropped and counted; the
    valid points of the same sender pass."""
    p = bad_run["pipeline"]
    assert bad_run["points"] == dict.fromkeys(POINT_CASES, 200)
    sel = f'{{job="{BAD_SERVICE}"}}'
    valid = {f"{BAD_SERVICE}-{case}" for case in VALID_POINTS}
    result = p.wait_for(f"group by (instance) ({sel})",
                        lambda r: {x["metric"]["instance"] for x in r} >= valid, timeout=30)
    assert {x["metric"]["instance"] for x in result} == valid
    assert _sum(p, f'cugar_executions_total{{instance="{BAD_SERVICE}-ok-counter"}}') == 7
    assert _sum(p, "bad_sender_temperature_celsius") == -3.5
    telemetry = scrape(p.collector_telemetry_url)
    filtered = {s.labels.get("filter"): s.value for s in telemetry
                if s.name == "otelcol_processor_filter_datapoints_filtered"}
    assert filtered == {"filter/invalid": len(INVALID_POINTS)}
    dropping = p.wait_for(alert_expr("CollectorDroppingInvalidPoints"), bool, timeout=60)
    assert {x["metric"]["filter"] for x in dropping} == {"filter/invalid"}
    assert not [s for s in telemetry if s.name == "otelcol_exporter_send_failed_metric_points"
                and s.value > 0]
