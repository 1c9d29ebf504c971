"""The collector fails; the agents never notice, and nothing is lost or counted twice.

Real processes throughout: our collector build, Prometheus and Jaeger (services/stack/pipeline.py)
and agent processes using our `otel` library (tests/support/fault_agent.py, which knows its own
ground truth: executions by outcome, spans produced, `tel.stats()`). Each test sends under its
own service name, so the tests share one pipeline; a test that stops a component starts it
again before it ends.

- SIGKILL of the collector mid-load (3 agents): Prometheus' totals equal the agents' counts.
- What the collector had accepted (spans and metric points) survives a SIGKILL in its
  persistent queue (file_storage) and reaches Jaeger and Prometheus after the restart;
  replayed cumulative points do not count twice.
- Agents started before the collector, with a small span queue: the spans they could not keep
  are counted in tel.stats() and in Prometheus (cugar_telemetry_dropped_total), and spans
  produced = spans in Jaeger + spans counted as dropped.
- In every case the agents raise nothing and an execution call returns within
  CALL_BOUND_MS, even while an export hangs for seconds.

Slow, blackholed and throttling (429/503 + Retry-After) collectors: tests/test_faults_network.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.stack.pipeline import Pipeline
from services.stack.process import wait_until
from tests.support.promql import alert_expr
from tests.support.faults import (
    SETTLE_S, Agents, expect_spans, expect_totals, fault_pipeline, queue_sizes, restored,
    unaffected,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with fault_pipeline(tmp_path_factory.mktemp("faults")) as p:
        yield p


def test_collector_sigkilled_mid_load_totals_stay_exact(pipeline: Pipeline,
                                                        tmp_path: Path) -> None:
    service = "faults-sigkill"
    collector = pipeline.process("collector")
    # A 2 s export deadline: an export the outage breaks is given up on (and counted) quickly.
    env = {**pipeline.agent_env(), "OTEL_EXPORTER_OTLP_TIMEOUT": "2000"}
    with restored(collector), Agents(tmp_path, service, env, count=3, pace_ms=5) as agents:
        agents.wait_stats("metrics delivered", lambda s: s.get("metric_exports", 0) >= 1)
        collector.kill()
        # The agents keep working while it is down, until each has seen its exports fail.
        agents.wait_stats("exports failing", lambda s: s.get("metric_exports_failed", 0) >= 1
                          and s.get("span_exports_failed", 0) >= 1)
        collector.start(timeout=60)
        agents.wait_delivered_again()
        results = agents.finish()
    t = unaffected(results)
    assert t["lost"] > 0, t  # the outage did cost spans, or this proves little
    expect_totals(pipeline, service, t)
    expect_spans(pipeline, service, t, exact=False)


def test_accepted_spans_and_points_survive_a_sigkill_in_the_persistent_queue(
        pipeline: Pipeline, tmp_path: Path) -> None:
    """Jaeger and Prometheus down: the collector accepts and holds everything the agent sends
    (the agent has finished and exited: it cannot resend). SIGKILL, backends back, restart:
    every span arrives in Jaeger and the counts in Prometheus are exact (cumulative points are
    replayed idempotently: several queued exports of the same series do not add up)."""
    service = "faults-persistent"
    collector, jaeger, prometheus = (pipeline.process(n) for n in
                                     ("collector", "jaeger", "prometheus"))
    with restored(jaeger, prometheus, collector):
        jaeger.stop()
        prometheus.stop()
        with Agents(tmp_path, service, pipeline.agent_env(), executions=200,
                    pace_ms=2) as agents:
            agents.wait_played(200)
            # A periodic export before the final one (a fast machine plays 200 executions
            # within one export interval).
            agents.wait_stats("a periodic metric export", lambda s: s.get("metric_exports", 0) >= 1)
            results = agents.finish()
        t = unaffected(results)
        stats = results[0]["stats"]
        assert t["exported"] == t["spans"] and t["lost"] == 0, t  # the collector took them all
        # Two accepted exports of the same cumulative series wait in the queue together.
        assert stats["metric_exports"] >= 2 and stats["metric_exports_failed"] == 0, stats
        wait_until(lambda: all(queue_sizes(pipeline).get(e, 0) > 0 for e in
                               ("otlp_grpc/traces", "otlp_http/prometheus")), 30,
                   what="the collector to hold spans and points in its sending queues")
        collector.kill()
    expect_spans(pipeline, service, t)
    expect_totals(pipeline, service, t)
    wait_until(lambda: not any(queue_sizes(pipeline).values()), SETTLE_S,
               what="the sending queues to drain")
    expect_totals(pipeline, service, t)  # nothing replayed later adds to them


def test_agents_started_before_the_collector_count_what_their_queue_dropped(
        pipeline: Pipeline, tmp_path: Path) -> None:
    """The collector is not there when the agents start. Their span queues (100 spans) fill;
    every span that does not fit, or whose export gave up, is counted in tel.stats() and, once
    the collector is up, in Prometheus; spans produced = spans in Jaeger + spans counted."""
    service = "faults-late-collector"
    collector = pipeline.process("collector")
    env = {**pipeline.agent_env(), "OTEL_BSP_MAX_QUEUE_SIZE": "100",
           "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "50", "OTEL_EXPORTER_OTLP_TIMEOUT": "2000"}
    with restored(collector):
        collector.stop()
        with Agents(tmp_path, service, env, count=2, pace_ms=2) as agents:
            agents.wait_played(400)  # 800 spans: far more than the queues hold
            collector.start(timeout=60)
            agents.wait_delivered_again()
            results = agents.finish()
    t = unaffected(results)
    assert sum(r["stats"]["spans_dropped"] for r in results) > 0, t  # the queues overflowed
    expect_totals(pipeline, service, t)  # includes cugar_telemetry_dropped_total == t["lost"]
    expect_spans(pipeline, service, t)  # produced = in Jaeger + counted, exactly
    dropping = pipeline.wait_for(alert_expr("SendersDroppingTelemetry"), bool, timeout=30)
    assert service in {x["metric"]["job"] for x in dropping}  # other tests share the pipeline
    assert {x["metric"]["reason"] for x in dropping} >= {"queue_full"}
