"""A slow, a blackholed and a throttling collector: the agents are unaffected, losses are counted,
and nothing counts twice once the real collector is reachable again.

The agents (tests/support/fault_agent.py, our `otel` library) talk to the real collector of a
real pipeline through a loopback proxy (tests/support/faulty_network.py): one that delays every
answer, one that accepts connections and never answers, and one that answers OTLP/HTTP with
429 or 503 and Retry-After before it forwards. What the installed OTLP exporters (1.45) do:
- OTLP/HTTP retries 429, 502, 503 and 504, waiting Retry-After (seconds or an HTTP date) instead
  of its own backoff (1, 2, 4 ... s, +-20 %), up to 6 attempts within OTEL_EXPORTER_OTLP_TIMEOUT;
  a Retry-After longer than what is left of that deadline makes it give up at once.
- OTLP/gRPC retries UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED and a few more, waiting
  what a google.rpc.RetryInfo in the trailers says, or its own backoff, within the same deadline.
Our library counts every batch an exporter gives up on (tel.stats() spans_export_failed, and
cugar_telemetry_dropped_total{reason="export_failed"}); metric points are cumulative, so a failed
metric export loses nothing that the next one does not carry.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from services.stack.pipeline import Pipeline
from tests.support.faults import Agents, expect_spans, expect_totals, fault_pipeline, unaffected
from tests.support.faulty_network import BLACKHOLE, FORWARD, TcpProxy, ThrottlingHttpProxy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with fault_pipeline(tmp_path_factory.mktemp("faults-network")) as p:
        yield p


def _address(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint)
    return parts.hostname or "127.0.0.1", parts.port or 0


def test_slow_collector_costs_the_agents_nothing(pipeline: Pipeline, tmp_path: Path) -> None:
    """Every answer of the collector arrives 300 ms late (per chunk, both signals): exports take
    longer, the agents' calls do not, and nothing is lost or doubled."""
    service = "faults-slow"
    with TcpProxy(_address(pipeline.otlp_grpc_endpoint), response_delay_s=0.3) as proxy:
        env = {**pipeline.agent_env(), "OTEL_EXPORTER_OTLP_ENDPOINT": proxy.endpoint}
        with Agents(tmp_path, service, env, count=2, pace_ms=5) as agents:
            agents.wait_stats("metrics delivered", lambda s: s.get("metric_exports", 0) >= 3)
            results = agents.finish()
    t = unaffected(results)
    assert t["lost"] == 0, t
    assert proxy.accepted >= 2, "the agents did not go through the slow proxy"
    expect_totals(pipeline, service, t)
    expect_spans(pipeline, service, t)


def test_blackholed_collector_never_blocks_and_every_loss_is_counted(
        pipeline: Pipeline, tmp_path: Path) -> None:
    """The collector's address accepts TCP and never answers: every export hangs until its
    1.5 s deadline, and the agents' calls stay fast. Then the network heals (connections are
    reset, new ones reach the collector): the counts in Prometheus are exact, the spans lost
    while blackholed are counted, and every other span is in Jaeger."""
    service = "faults-blackhole"
    with TcpProxy(_address(pipeline.otlp_grpc_endpoint)) as proxy:
        proxy.mode = BLACKHOLE
        env = {**pipeline.agent_env(), "OTEL_EXPORTER_OTLP_ENDPOINT": proxy.endpoint,
               "OTEL_EXPORTER_OTLP_TIMEOUT": "1500"}
        with Agents(tmp_path, service, env, count=2, pace_ms=5) as agents:
            agents.wait_stats("exports hanging and failing",
                              lambda s: s.get("metric_exports_failed", 0) >= 2
                              and s.get("span_exports_failed", 0) >= 2)
            assert all(p["stats"]["metric_exports"] == 0 for p in agents.progress())
            proxy.mode = FORWARD
            proxy.drop_connections()
            agents.wait_delivered_again()
            results = agents.finish()
    t = unaffected(results)
    assert t["lost"] > 0, t
    expect_totals(pipeline, service, t)  # executions exact; cugar_telemetry_dropped == lost
    # An export that missed its deadline under load may still have been delivered.
    expect_spans(pipeline, service, t, exact=False)


def test_429_and_503_with_retry_after_are_waited_out_and_lose_nothing(
        pipeline: Pipeline, tmp_path: Path) -> None:
    """OTLP/HTTP: each signal's first two requests are refused (429, then 503) with
    Retry-After: 3. The exporter waits 3 s each time (its own backoff would be 1 s, then 2 s),
    the retries succeed within the 10 s export deadline: nothing lost, nothing doubled."""
    service = "faults-throttled"
    refusals = [(429, "3"), (503, "3")]
    script = {"/v1/traces": list(refusals), "/v1/metrics": list(refusals)}
    with ThrottlingHttpProxy(pipeline.otlp_http_endpoint, script) as proxy:
        env = {**pipeline.agent_env(protocol="http/protobuf"),
               "OTEL_EXPORTER_OTLP_ENDPOINT": proxy.endpoint}
        # ~100 spans/s: the 6 s of waiting fit in the span queue (2048), nothing is dropped.
        with Agents(tmp_path, service, env, pace_ms=20) as agents:
            agents.wait_stats("metrics delivered", lambda s: s.get("metric_exports", 0) >= 2)
            results = agents.finish()
    t = unaffected(results)
    assert t["lost"] == 0 and results[0]["stats"]["metric_exports_failed"] == 0, results
    for path in script:
        requests = [(at, status) for at, p, status in proxy.throttle.seen if p == path]
        assert [s for _, s in requests[:3]] == [429, 503, 0], requests
        gaps = [b[0] - a[0] for a, b in zip(requests, requests[1:3])]
        assert all(gap >= 2.9 for gap in gaps), (path, gaps)  # Retry-After, not the backoff
    expect_totals(pipeline, service, t)
    expect_spans(pipeline, service, t)


def test_retry_after_beyond_the_export_deadline_is_a_counted_loss(
        pipeline: Pipeline, tmp_path: Path) -> None:
    """A 429 asking for 60 s, with a 10 s export deadline: the exporter gives up on that batch at
    once (it does not wait, and the agent does not either); the spans are counted as lost, in
    tel.stats() and in Prometheus, and the metrics (cumulative) lose nothing."""
    service = "faults-throttled-long"
    with ThrottlingHttpProxy(pipeline.otlp_http_endpoint, {"/v1/traces": [(429, "60")]}) as proxy:
        env = {**pipeline.agent_env(protocol="http/protobuf"),
               "OTEL_EXPORTER_OTLP_ENDPOINT": proxy.endpoint}
        with Agents(tmp_path, service, env, pace_ms=5) as agents:
            agents.wait_stats("the refused batch counted",
                              lambda s: s.get("spans_export_failed", 0) > 0)
            agents.wait_stats("spans delivered after it", lambda s: s.get("spans_exported", 0) > 0)
            results = agents.finish()
    t = unaffected(results)
    traces = [(at, status) for at, p, status in proxy.throttle.seen if p == "/v1/traces"]
    assert traces[0][1] == 429 and traces[1][1] == 0, traces
    assert traces[1][0] - traces[0][0] < 30, traces  # gave up at once instead of waiting 60 s
    assert t["lost"] == results[0]["stats"]["spans_export_failed"] > 0, t
    expect_totals(pipeline, service, t)
    expect_spans(pipeline, service, t)
