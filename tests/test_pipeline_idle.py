"""End to end: a pipeline nobody sends to. The golden signals are absent — never
a fake 0 — and nothing pages (NoRecentExecutions is only pending: its real `for` is 30m)."""

from __future__ import annotations

import pytest

from otel import catalogue
from services.stack.pipeline import Pipeline
from services.stack.prometheus_api import value

pytestmark = pytest.mark.integration

EVALUATIONS = 5


@pytest.fixture(scope="module")
def evaluated(pipeline: Pipeline) -> Pipeline:
    """The golden-signal rules have run several times over the idle pipeline."""
    iterations = 'sum(prometheus_rule_group_iterations_total{rule_group=~".*;cugar-golden-signals"})'
    pipeline.wait_for(iterations, lambda r: bool(r) and value(r) >= EVALUATIONS,
                      timeout=60)
    failures = pipeline.query("sum(prometheus_rule_evaluation_failures_total)")
    assert value(failures) == 0, "rule evaluation failed"
    return pipeline


def test_golden_signals_are_absent(evaluated: Pipeline) -> None:
    present = {g.name: evaluated.query(g.name) for g in catalogue.GOLDEN_SIGNALS}
    assert not any(present.values()), f"idle pipeline reports golden signals: {present}"


def test_no_cugar_series_without_traffic(evaluated: Pipeline) -> None:
    assert evaluated.query('count({__name__=~"cugar_.+"})') == []
    # The collector and Jaeger are up and scraped: absence is "no traffic", not "no pipeline".
    up = {r["metric"]["job"]: r["value"][1] for r in evaluated.query("up")}
    assert up["otel-collector-telemetry"] == "1" and up["jaeger"] == "1"


def test_nothing_pages_when_idle(evaluated: Pipeline) -> None:
    states = {a["labels"]["alertname"]: a["state"] for a in evaluated.alerts()}
    assert states == {"NoRecentExecutions": "pending"}
