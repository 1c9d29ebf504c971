"""The API produces every catalogue metric, shaped exactly as the catalogue says."""

from __future__ import annotations

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
            assert tuple(point.attributes) == spec.attributes, spec.name  # the allow-list
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
    name = "cugar_execution_steps"
    bounds = catalogue.METRICS_BY_NAME[name].buckets
    for value in (bounds[0], bounds[0] + 0.5, bounds[-1] + 1, 0):
        store.observe(name, ("smb", "success"), value)
    (metric,) = store.to_sdk_metrics()
    point = metric.data.data_points[0]
    assert point.bucket_counts[0] == 2  # 0 and bounds[0]
    assert point.bucket_counts[1] == 1  # bounds[0] + 0.5
    assert point.bucket_counts[-1] == 1  # above the last bound
    assert (point.count, point.min, point.max) == (4, 0, bounds[-1] + 1)
    assert point.sum == bounds[0] * 2 + 0.5 + bounds[-1] + 1
