"""The API produces every catalogue metric, shaped exactly as the catalogue says."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics.export import AggregationTemporality, Histogram, Sum

from otel import catalogue
from otel.metrics import MetricStore
from otel.testing import in_memory_telemetry


def exercise_everything(agent) -> None:
    with agent.execution(profile="enterprise", agent_name="a", budget_ceiling=10) as ex:
        with ex.tool_call("t", domain="governance", side_effect="execute") as call:
            call.error("Denied")
        with ex.approval(tool="t"):
            pass
        ex.spend(11)
    with agent.execution(profile="smb", agent_name="a") as ex:
        ex.fail("no lead")
        with ex.llm_call("openai", "gpt-4o-mini", stream=True) as llm:
            llm.first_chunk()
            llm.record(input_tokens=120, output_tokens=30, finish_reason="stop")
        with ex.llm_call("openai", "in-house-model") as llm:
            llm.record(input_tokens=10, output_tokens=5)  # no price: unpriced, not guessed
        with ex.llm_call("anthropic", "claude-sonnet-4-5") as llm:
            llm.error("429")


def test_every_catalogue_metric_is_produced_with_catalogue_shape():
    tel, _, metrics = in_memory_telemetry()
    exercise_everything(tel.agent)
    tel.force_flush()
    tel.shutdown()
    exported = {m.name: m for rm in metrics.exports[-1].resource_metrics
                for sm in rm.scope_metrics for m in sm.metrics}
    assert set(exported) == {m.name for m in catalogue.METRICS}
    for spec in catalogue.METRICS:
        m = exported[spec.name]
        assert (m.unit, m.description) == (spec.unit, spec.description), spec.name
        assert m.data.aggregation_temporality is AggregationTemporality.CUMULATIVE
        for point in m.data.data_points:
            # the allow-list, in order; error.type only on the points of failed calls
            assert tuple(point.attributes) in (spec.attributes, tuple(
                a for a in spec.attributes if a != catalogue.ERROR_TYPE)), spec.name
        if spec.kind is catalogue.Kind.COUNTER:
            assert isinstance(m.data, Sum) and m.data.is_monotonic
        else:
            assert isinstance(m.data, Histogram)
            for point in m.data.data_points:
                assert tuple(point.explicit_bounds) == tuple(float(b) for b in spec.buckets)
                assert len(point.bucket_counts) == len(spec.buckets) + 1


def test_bucket_boundaries_follow_the_otel_rule():
    """A value equal to a bound belongs to that bound's bucket: (prev, bound]."""
    store = MetricStore()
    spec = catalogue.EXECUTION_STEPS
    bounds = spec.buckets
    for value in (bounds[0], bounds[0] + 0.5, bounds[-1] + 1, 0):
        store.observe(spec, ("success", "smb"), value)
    (metric,) = store.to_sdk_metrics()
    point = metric.data.data_points[0]
    assert dict(point.attributes) == {"outcome": "success", "profile": "smb"}
    assert point.bucket_counts[0] == 2  # 0 and bounds[0]
    assert point.bucket_counts[1] == 1  # bounds[0] + 0.5
    assert point.bucket_counts[-1] == 1  # above the last bound
    assert (point.count, point.min, point.max) == (4, 0, bounds[-1] + 1)
    assert point.sum == bounds[0] * 2 + 0.5 + bounds[-1] + 1


C, H = catalogue.Kind.COUNTER, catalogue.Kind.HISTOGRAM


# What Prometheus' OTLP receiver stores (translation strategy UnderscoreEscapingWithSuffixes,
# github.com/prometheus/otlptranslator): dots and underscores split the name into tokens, the
# unit adds its suffix unless a token already is it ("{annotations}" and "1" add none), and a
# counter's "total" tokens move to the end.
@pytest.mark.parametrize("name,unit,kind,stored", [
    ("cugar.executions", "{execution}", C, "cugar_executions_total"),
    ("cugar.requests.total", "{request}", C, "cugar_requests_total"),
    ("cugar.total.requests", "{request}", C, "cugar_requests_total"),
    ("requests.count", "1", C, "requests_count_total"),
    ("cugar.cpu.time", "s", C, "cugar_cpu_time_seconds_total"),
    ("cugar.tool.call.duration", "s", H, "cugar_tool_call_duration_seconds"),
    ("cugar.wait.seconds", "s", H, "cugar_wait_seconds"),
    ("cugar.execution.steps", "{step}", H, "cugar_execution_steps"),
    ("cugar.budget.utilization.ratio", "1", H, "cugar_budget_utilization_ratio"),
    ("cugar.budget.utilization", "1", H, "cugar_budget_utilization"),
    ("cugar.side_effect..calls", "{call}", C, "cugar_side_effect_calls_total"),
])
def test_prometheus_name_is_prometheus_otlp_translation(name, unit, kind, stored):
    assert catalogue.prometheus_name(name, unit, kind) == stored
    assert catalogue.MetricSpec(name, kind, unit, "").prometheus_name == stored


def test_catalogue_names_follow_prometheus_conventions():
    for spec in catalogue.METRICS:
        stored = spec.prometheus_name
        suffix = "_total" if spec.kind is C else "_seconds" if spec.unit == "s" else ""
        # ours are cugar_*; the GenAI client metrics keep the conventions' names
        assert stored.startswith(("cugar_", "gen_ai_client_")) and stored.endswith(suffix), stored
        assert spec.labels == tuple(a.replace(".", "_") for a in spec.attributes)
    assert catalogue.TOOL_ERRORS.labels == ("tool", "domain", "error_type")
    assert catalogue.label_name("deployment.environment.name") == "deployment_environment_name"
