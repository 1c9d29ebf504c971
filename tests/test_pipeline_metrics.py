"""End to end: a known workload from the simulated agent CLI, in several processes and
two runs (the second is a restart: new processes and instance ids, OTLP/HTTP instead of gRPC,
10% trace sampling), through our collector
into Prometheus. Every catalogue series exists and its value equals the agent's own ground
truth; the golden signals equal what the workload implies; instances never collide."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from otel import catalogue
from services.agent.summary import merge
from services.stack.pipeline import Pipeline
from services.stack.process import wait_until
from services.stack.prometheus_api import Result, value
from tests.support.promql import total

pytestmark = pytest.mark.integration

SERVICE = "cugar-e2e"
ENVIRONMENT = "e2e"
SEL = f'{{job="{SERVICE}"}}'
RUNS = (  # (executions, processes, seed, OTLP protocol, extra environment)
    (300, 3, 11, "grpc", {}),
    # The restart: new processes (new instance ids), OTLP over HTTP, 10% trace sampling —
    # metrics must stay exact whatever the sampling ratio.
    (120, 2, 12, "http/protobuf",
     {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}),
)
SETTLE_S = 30


@pytest.fixture(scope="module")
def truth(pipeline: Pipeline, run_agent: Callable[..., dict]) -> dict:
    env = {"OTEL_SERVICE_NAME": SERVICE,
           "OTEL_RESOURCE_ATTRIBUTES": f"deployment.environment.name={ENVIRONMENT}"}
    summaries = []
    for executions, processes, seed, protocol, extra in RUNS:
        summary = run_agent(pipeline, "--executions", str(executions), "--processes",
                            str(processes), "--seed", str(seed), "--time-scale", "0",
                            "--fail", "governance=0.4", "--approval-timeout-rate", "0.1",
                            "--approval-reject-rate", "0.2", env={**env, **extra},
                            protocol=protocol)
        assert summary["executions"] == executions
        summaries.append(summary)
    merged = merge(summaries)
    # The workload must exercise everything the assertions below check, or they prove nothing.
    for key in ("failed", "tool_errors", "budget_exceeded", "budget_warnings"):
        assert merged[key] > 0, f"workload produced no {key}; pick another seed"
    approvals = merged["approvals"]
    assert all(approvals[d] > 0 for d in catalogue.APPROVAL_DECISIONS), approvals
    # Settled: the last export of every worker has been scraped.
    expect_eventually(pipeline, f"sum(cugar_executions_total{SEL})", merged["executions"])
    return merged


def _by(label: str) -> Callable[[Result], dict[str, float]]:
    return lambda result: {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


def expect_eventually(pipeline: Pipeline, promql: str, expected: Any,
                      shape: Callable[[Result], Any] = total) -> None:
    """Poll until `shape(query result) == expected`; the failure names the query (the series)."""
    if isinstance(expected, dict):
        expected = {k: float(v) for k, v in expected.items() if v}  # absent series == 0
    else:
        expected = float(expected)
    try:
        pipeline.wait_for(promql, lambda r: shape(r) == expected, timeout=SETTLE_S)
    except TimeoutError:
        got = shape(pipeline.query(promql))
        pytest.fail(f"{promql}: expected {expected}, Prometheus has {got}", pytrace=False)


def test_every_catalogue_series_exists(pipeline: Pipeline, truth: dict) -> None:
    """Polled as a whole: recording rules live in several groups, each evaluated on its own
    schedule, so one group's series may appear an evaluation after another's."""
    missing: list[str] = []

    def none_missing() -> bool:
        missing[:] = sorted(name for name in catalogue.all_series_names()
                            if not pipeline.query(f'count({{__name__="{name}"}})'))
        return not missing

    try:
        wait_until(none_missing, SETTLE_S, interval=1, what="every catalogue series")
    except TimeoutError:
        pytest.fail(f"series missing from Prometheus after the workload: {missing}",
                    pytrace=False)


def test_execution_counts_match_ground_truth(pipeline: Pipeline, truth: dict) -> None:
    expect_eventually(pipeline, f"sum(cugar_executions_total{SEL})", truth["executions"])
    assert truth["successful"] + truth["failed"] == truth["executions"]
    expect_eventually(pipeline, f"sum by (outcome) (cugar_executions_total{SEL})",
                      {"success": truth["successful"], "failure": truth["failed"]}, _by("outcome"))
    expect_eventually(pipeline, f"sum(cugar_executions_successful{SEL})", truth["successful"])
    expect_eventually(pipeline, f"sum(cugar_executions_failed{SEL})", truth["failed"])
    per_profile = {p: v["executions"] for p, v in truth["by_profile"].items()}
    expect_eventually(pipeline, f"sum by (profile) (cugar_executions_total{SEL})", per_profile,
                      _by("profile"))
    expect_eventually(pipeline, f"sum(cugar_execution_duration_seconds_count{SEL})",
                      truth["executions"])
    expect_eventually(pipeline, f"sum(cugar_execution_steps_sum{SEL})", truth["steps"])
    expect_eventually(pipeline, f"sum(cugar_execution_steps_count{SEL})", truth["executions"])


def test_tool_and_domain_counts_match_ground_truth(pipeline: Pipeline, truth: dict) -> None:
    expect_eventually(pipeline, f"sum(cugar_tool_calls_total{SEL})", truth["tool_calls"])
    expect_eventually(pipeline, f'sum(cugar_tool_calls_total{{job="{SERVICE}",outcome="error"}})',
                      truth["tool_errors"])
    expect_eventually(pipeline, f"sum(cugar_tool_errors_total{SEL})", truth["tool_errors"])
    expect_eventually(pipeline, f"sum(cugar_tool_call_duration_seconds_count{SEL})",
                      truth["tool_calls"])
    calls = {d: v["calls"] for d, v in truth["by_domain"].items()}
    errors = {d: v["errors"] for d, v in truth["by_domain"].items()}
    expect_eventually(pipeline, f"sum by (domain) (cugar_domain_usage_total{SEL})", calls,
                      _by("domain"))
    expect_eventually(pipeline, f"sum by (domain) (cugar_domain_errors_total{SEL})", errors,
                      _by("domain"))
    expect_eventually(pipeline, f"sum by (domain) (cugar_tool_calls_total{SEL})", calls,
                      _by("domain"))
    tools = {t: v["calls"] for t, v in truth["by_tool"].items()}
    expect_eventually(pipeline, f"sum by (tool) (cugar_tool_calls_total{SEL})", tools, _by("tool"))
    expect_eventually(pipeline, f"sum by (error_type) (cugar_tool_errors_total{SEL})",
                      truth["error_types"], _by("error_type"))


def test_budget_and_approvals_match_ground_truth(pipeline: Pipeline, truth: dict) -> None:
    expect_eventually(pipeline, f"sum(cugar_budget_used_total{SEL})", truth["budget_used"])
    used = {p: v["budget_used"] for p, v in truth["by_profile"].items()}
    expect_eventually(pipeline, f"sum by (profile) (cugar_budget_used_total{SEL})", used,
                      _by("profile"))
    expect_eventually(pipeline, f"sum(cugar_budget_exceeded_total{SEL})", truth["budget_exceeded"])
    expect_eventually(pipeline, f"sum(cugar_budget_warnings_total{SEL})", truth["budget_warnings"])
    expect_eventually(pipeline, f"sum(cugar_budget_utilization_ratio_count{SEL})",
                      truth["executions"])
    expect_eventually(pipeline, f"sum by (decision) (cugar_approvals_total{SEL})",
                      truth["approvals"], _by("decision"))
    expect_eventually(pipeline, f"sum(cugar_approval_timeouts_total{SEL})",
                      truth["approvals"]["timeout"])
    expect_eventually(pipeline, f"sum(cugar_approval_wait_duration_seconds_count{SEL})",
                      sum(truth["approvals"].values()))


def _golden(pipeline: Pipeline, name: str, expected: float) -> None:
    try:
        pipeline.wait_for(name, lambda r: len(r) == 1 and value(r) == pytest.approx(
            expected, rel=1e-9), timeout=SETTLE_S)
    except TimeoutError:
        pytest.fail(f"{name}: expected {expected} from the workload, Prometheus has "
                    f"{pipeline.query(name)}", pytrace=False)


def test_golden_signals_match_the_workload(pipeline: Pipeline, truth: dict) -> None:
    """The 5m window covers both runs, so each signal is exactly what the workload implies."""
    n = truth["executions"]
    _golden(pipeline, "cugar_success_rate", truth["successful"] / n)
    _golden(pipeline, "cugar_error_rate", truth["failed"] / n)
    _golden(pipeline, "cugar_tool_error_rate", truth["tool_errors"] / truth["tool_calls"])
    _golden(pipeline, "cugar_steps_per_execution", truth["steps"] / n)
    utilization = (total(pipeline.query("sum(cugar_budget_utilization_ratio_sum)"))
                   / total(pipeline.query("sum(cugar_budget_utilization_ratio_count)")))
    assert 0 < utilization < 2.5
    _golden(pipeline, "cugar_budget_utilization", utilization)
    wait = (total(pipeline.query("sum(cugar_approval_wait_duration_seconds_sum)"))
            / total(pipeline.query("sum(cugar_approval_wait_duration_seconds_count)")))
    _golden(pipeline, "cugar_approval_wait_time_ms", wait * 1000)  # histograms in s, signal in ms
    for label, q in catalogue.LATENCY_PERCENTILES.items():
        expected = 1000 * total(pipeline.query(f"histogram_quantile({q}, sum by (le) "
                                               f"(cugar_execution_duration_seconds_bucket))"))
        _golden(pipeline, f'cugar_latency_ms{{percentile="{label}"}}', expected)
    latency = _by("percentile")(pipeline.query("cugar_latency_ms"))
    assert latency["p50"] <= latency["p95"] <= latency["p99"]


def test_instances_never_collide(pipeline: Pipeline, truth: dict) -> None:
    per_instance = _by("instance")(pipeline.query(f"sum by (instance) (cugar_executions_total{SEL})"))
    assert len(per_instance) == sum(run[1] for run in RUNS), per_instance
    assert all(name.rsplit("-", 1)[-1].startswith("w") for name in per_instance), per_instance
    assert sum(per_instance.values()) == truth["executions"]
    # Every CUGAr series carries the resource identity; none lacks an instance.
    unlabelled = pipeline.query(
        'count by (__name__) ({__name__=~"cugar_.+_total", instance=""})')
    assert not unlabelled, unlabelled
    environments = _by("deployment_environment_name")(pipeline.query(
        f"count by (deployment_environment_name) (cugar_executions_total{SEL})"))
    assert set(environments) == {ENVIRONMENT}


def test_both_otlp_transports_carried_the_workload(pipeline: Pipeline, truth: dict) -> None:
    # The collector's self-metrics are scraped separately: poll until the scrape caught up.
    query = "sum by (transport) (otelcol_receiver_accepted_metric_points)"
    accepted = _by("transport")(pipeline.wait_for(
        query, lambda r: len(r) == 2, timeout=SETTLE_S))
    assert accepted.get("grpc", 0) > 0 and accepted.get("http", 0) > 0, accepted
