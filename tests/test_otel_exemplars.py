"""Exemplars on the latency histograms: the measurement's trace and span id, as the SDK's
exemplar filter (OTEL_METRICS_EXEMPLAR_FILTER) and its bucket-aligned reservoir define them."""

from __future__ import annotations

import time

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import HistogramDataPoint
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from otel import ConfigError, catalogue
from otel.config import load_settings
from otel.metrics import AgentMetrics
from otel.testing import in_memory_telemetry, last_points


def _points(exporter, spec) -> list[HistogramDataPoint]:
    return list(last_points(exporter).get(spec.name, {}).values())


def _exemplars(exporter, spec) -> list:
    return [e for p in _points(exporter, spec) for e in p.exemplars]


def _by_trace(spans, name_prefix: str) -> dict[int, object]:
    return {s.context.trace_id: s for s in spans.get_finished_spans()
            if s.name.startswith(name_prefix)}


def test_execution_and_tool_durations_carry_their_own_spans_ids() -> None:
    tel, spans, metrics = in_memory_telemetry()
    try:
        with tel.agent.execution(profile="smb", agent_name="a") as fast:
            with fast.tool_call("crm_lookup", domain="intelligence"):
                pass
        with tel.agent.execution(profile="smb", agent_name="a") as slow:
            with slow.tool_call("crm_lookup", domain="intelligence"):
                time.sleep(0.06)
        tel.force_flush()
        executions = _by_trace(spans, "invoke_agent")
        tools = {s.context.span_id: s for s in spans.get_finished_spans()
                 if s.name.startswith("execute_tool")}
        ex = _exemplars(metrics, catalogue.EXECUTION_DURATION)
        # Two buckets (<= 25 ms and 50..100 ms): one exemplar each, in value order.
        assert len(ex) == 2 and ex[0].value < ex[1].value
        slowest = ex[-1]
        assert format(slowest.trace_id, "032x") == slow.trace_id
        span = executions[slowest.trace_id]
        assert slowest.span_id == span.context.span_id
        assert slowest.value == pytest.approx((span.end_time - span.start_time) / 1e9, abs=2e-3)
        assert slowest.filtered_attributes is None
        tool_ex = max(_exemplars(metrics, catalogue.TOOL_CALL_DURATION), key=lambda e: e.value)
        assert tools[tool_ex.span_id].context.trace_id == tool_ex.trace_id
        assert format(tool_ex.trace_id, "032x") == slow.trace_id
    finally:
        tel.shutdown()


def test_llm_call_histograms_carry_their_chat_spans_ids() -> None:
    tel, spans, metrics = in_memory_telemetry()
    try:
        with tel.agent.execution(profile="smb", agent_name="a") as ex:
            with ex.llm_call("openai", "gpt-4o-mini") as fast:
                fast.record(input_tokens=10, output_tokens=2)
            with ex.tool_call("draft_email", domain="engagement") as tool:
                with tool.llm_call("openai", "gpt-4o-mini", stream=True) as slow:
                    time.sleep(0.05)
                    slow.first_chunk()
                    slow.record(input_tokens=5000, output_tokens=700)
        tel.force_flush()
        chats = {s.context.span_id: s for s in spans.get_finished_spans()
                 if s.name.startswith("chat ")}
        slow_span = max(chats.values(), key=lambda s: s.end_time - s.start_time)
        for spec in (catalogue.LLM_OPERATION_DURATION, catalogue.LLM_INFERENCE_DURATION,
                     catalogue.LLM_TIME_TO_FIRST_CHUNK, catalogue.LLM_TOKEN_USAGE):
            exemplars = _exemplars(metrics, spec)
            assert exemplars and {e.span_id for e in exemplars} <= set(chats), spec.name
            slowest = max(exemplars, key=lambda e: e.value)
            assert (slowest.span_id, slowest.trace_id) == (
                slow_span.context.span_id, slow_span.context.trace_id), spec.name
        duration = max(_exemplars(metrics, catalogue.LLM_OPERATION_DURATION), key=lambda e: e.value)
        assert duration.value == pytest.approx(
            (slow_span.end_time - slow_span.start_time) / 1e9, abs=2e-3)
    finally:
        tel.shutdown()


def test_exemplars_are_exported_once_and_the_last_of_a_bucket_wins() -> None:
    tel, _, metrics = in_memory_telemetry()
    try:
        ids = []
        for _ in range(3):
            with tel.agent.execution(profile="smb", agent_name="a") as ex:
                ids.append(ex.trace_id)
        tel.force_flush()
        (only,) = _exemplars(metrics, catalogue.EXECUTION_DURATION)
        assert format(only.trace_id, "032x") == ids[-1]
        tel.force_flush()  # nothing new recorded: the counts stay, no exemplar is sent again
        assert _points(metrics, catalogue.EXECUTION_DURATION)[0].count == 3
        assert _exemplars(metrics, catalogue.EXECUTION_DURATION) == []
    finally:
        tel.shutdown()


def test_unsampled_executions_have_no_exemplar_unless_always_on() -> None:
    env = {"OTEL_TRACES_SAMPLER": "always_off"}
    for mode, expected in (("trace_based", 0), ("always_on", 1), ("always_off", 0)):
        tel, _, metrics = in_memory_telemetry({**env, "OTEL_METRICS_EXEMPLAR_FILTER": mode})
        try:
            with tel.agent.execution(profile="smb", agent_name="a"):
                pass
            tel.force_flush()
            ex = _exemplars(metrics, catalogue.EXECUTION_DURATION)
            assert len(ex) == expected, mode
            assert all(e.trace_id is None and e.span_id is None for e in ex)
        finally:
            tel.shutdown()


def test_always_off_records_no_exemplar_for_sampled_spans() -> None:
    tel, _, metrics = in_memory_telemetry({"OTEL_METRICS_EXEMPLAR_FILTER": "always_off"})
    try:
        with tel.agent.execution(profile="smb", agent_name="a"):
            pass
        tel.force_flush()
        assert _points(metrics, catalogue.EXECUTION_DURATION)[0].count == 1
        assert _exemplars(metrics, catalogue.EXECUTION_DURATION) == []
    finally:
        tel.shutdown()


def test_the_current_span_is_the_default_and_unsampled_ones_are_skipped() -> None:
    store = AgentMetrics()
    sampled = SpanContext(0xABC, 0x12, False, TraceFlags(TraceFlags.SAMPLED))
    unsampled = SpanContext(0xDEF, 0x34, False, TraceFlags(0))
    with trace.use_span(NonRecordingSpan(sampled)):
        store.observe(catalogue.APPROVAL_WAIT, ("approved",), 0.2)
    with trace.use_span(NonRecordingSpan(unsampled)):
        store.observe(catalogue.APPROVAL_WAIT, ("approved",), 3.0)
    store.observe(catalogue.APPROVAL_WAIT, ("approved",), 4.0)  # no span at all
    (metric,) = [m for m in store.to_sdk_metrics() if m.name == catalogue.APPROVAL_WAIT.name]
    (point,) = metric.data.data_points
    assert [(e.value, e.trace_id, e.span_id) for e in point.exemplars] == [(0.2, 0xABC, 0x12)]


def test_the_filter_setting_is_validated() -> None:
    assert load_settings({}).exemplar_filter == "trace_based"
    on = load_settings({"OTEL_METRICS_EXEMPLAR_FILTER": "ALWAYS_ON"})
    assert on.exemplar_filter == "always_on"
    with pytest.raises(ConfigError, match="OTEL_METRICS_EXEMPLAR_FILTER='sometimes'"):
        load_settings({"OTEL_METRICS_EXEMPLAR_FILTER": "sometimes"})
    with pytest.raises(ValueError):
        AgentMetrics(exemplar_filter="sometimes")
