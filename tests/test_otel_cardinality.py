"""A flood of distinct label values grows neither the series count nor memory."""

from __future__ import annotations

import gc
import tracemalloc

from otel import catalogue
from otel.testing import (
    QUIET_EXPORT_ENV,
    CountingSpanExporter,
    InMemoryMetricExporter,
    last_points,
    total,
)
from otel.setup import create_telemetry

FLOOD = 100_000


def flood(agent, start: int, stop: int) -> None:
    for i in range(start, stop):
        with agent.execution(profile=f"profile-{i}", agent_name="flood") as ex:
            with ex.tool_call(f"tool-{i}", domain=f"domain-{i}", side_effect=f"fx-{i}") as c:
                c.error(f"Error{i}")
            with ex.approval(tool=f"tool-{i}") as ap:
                ap.approve()


def test_flood_of_distinct_label_values_is_bounded():
    metrics = InMemoryMetricExporter()
    tel = create_telemetry(
        env={**QUIET_EXPORT_ENV, "CUGAR_MAX_TOOLS": "50", "CUGAR_MAX_ERROR_TYPES": "20",
             "OTEL_TRACES_EXPORTER": "none"},
        metric_exporter=metrics)
    try:
        flood(tel.agent, 0, 2_000)  # warm-up: bounded sets fill, memos reach steady state
        gc.collect()
        tracemalloc.start()
        before, _ = tracemalloc.get_traced_memory()
        series_before = tel.stats()["metric_series"]
        flood(tel.agent, 2_000, FLOOD)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        stats = tel.stats()
        assert stats["metric_series"] == series_before, "new series appeared after the bound"
        assert after - before < 2_000_000, f"memory grew by {after - before} bytes"
        assert stats["internal_errors"] == 0

        tel.force_flush()
        p = last_points(metrics)
        calls, executions = p[catalogue.TOOL_CALLS.name], p[catalogue.EXECUTIONS.name]
        tools = {dict(k)["tool"] for k in calls}
        assert len(tools) == 50 + 1 and catalogue.OTHER in tools
        errors = {dict(k)[catalogue.ERROR_TYPE] for k in p[catalogue.TOOL_ERRORS.name]}
        assert len(errors) == 20 + 1
        assert {dict(k)["domain"] for k in p[catalogue.DOMAIN_USAGE.name]} == {catalogue.OTHER}
        assert {dict(k)["profile"] for k in executions} == {catalogue.OTHER}
        # Nothing was lost on the way: every call is counted, just under bounded labels.
        assert total(calls) == FLOOD
        assert total(executions) == FLOOD
        assert stats["labels_overflowed"] > 0
        # Total series across all metrics stay far below the flood size.
        assert stats["metric_series"] < 600
    finally:
        tel.shutdown()


def test_flood_with_tracing_keeps_queues_and_memos_bounded():
    spans = CountingSpanExporter()
    n = 20_000
    tel = create_telemetry(
        env={**QUIET_EXPORT_ENV, "OTEL_BSP_MAX_QUEUE_SIZE": "256",
             "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64"},
        span_exporter=spans, metric_exporter=InMemoryMetricExporter())
    peak = 0
    for i in range(0, n, 1000):
        flood(tel.agent, i, i + 1000)
        peak = max(peak, tel.stats()["spans_queued"])
    memo = len(tel.agent._core.clean_text._memo)
    tel.shutdown()
    s = tel.stats()
    assert peak <= 256 and memo <= 4096
    # Every span is accounted for: exported, or dropped and counted.
    assert spans.count + s["spans_dropped"] == 3 * n
