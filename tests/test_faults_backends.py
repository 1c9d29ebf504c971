"""Backends failing under load, on the real pipeline (our collector, Prometheus, Alertmanager,
Jaeger) with agent processes running: Prometheus restarted on its own TSDB, and Jaeger stopped.

Each time the agents finish unaffected, Prometheus' counts equal the agents' ground truth (no
loss, nothing counted twice: no reset, the window increase exact across the gap), and the only
alerts whose expressions became true are the ones the rules intend for that fault. The alert
rules are the repository's, with their real `for:` durations: the check is on each rule's
expression over the fault window (what would fire once `for:` has passed) and on ALERTS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from otel import catalogue
from services.monitoring import queries as q
from services.monitoring.tunables import ALERTS
from services.stack import components
from services.stack.pipeline import Pipeline
from tests.conftest import require_pipeline_components
from tests.support import require
from tests.support.promql import total

pytestmark = pytest.mark.integration

# The traces exporter gives up after this many seconds of retries here (120s in the shipped
# config): long enough to ride out a blip, short enough to see the failure counted in a test.
TRACES_RETRY_S = 3
SETTLE_S = 45
# A clean workload (no tool errors, no approval timeouts or rejections, no latency), so that
# the agent alerts have nothing to say; budget exceedances remain (FrequentBudgetExceeded is
# computed from the ground truth below).
CLEAN = [a for d in catalogue.DOMAINS for a in ("--fail", f"{d}=0")] + [
    "--approval-timeout-rate", "0", "--approval-reject-rate", "0", "--time-scale", "0"]
RATE, DURATION_S, PROCESSES = 15, 12, 2


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    require_pipeline_components()
    require(components.JAEGER)
    work = tmp_path_factory.mktemp("faults-backends")
    retry = work / "traces-retry.yaml"
    retry.write_text("exporters:\n  otlp_grpc/traces:\n    retry_on_failure:\n"
                     "      initial_interval: 1s\n      max_interval: 1s\n"
                     f"      max_elapsed_time: {TRACES_RETRY_S}s\n")
    with Pipeline(work / "pipeline", collector_overrides=[retry]) as p:
        yield p


@pytest.fixture(scope="module")
def budget_exceeded() -> list[int]:
    """Budget exceedances of every load of this module (FrequentBudgetExceeded counts them
    fleet-wide over an hour)."""
    return []


def start_load(pipeline: Pipeline, run_agent: Callable[..., dict], service: str,
               seed: int) -> Future:
    """The agent CLI in the background: RATE executions/s for DURATION_S in PROCESSES
    processes; the future's result is its ground-truth summary."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(run_agent, pipeline, "--rate", str(RATE), "--duration", str(DURATION_S),
                         "--processes", str(PROCESSES), "--seed", str(seed), *CLEAN,
                         env={"OTEL_SERVICE_NAME": service})
    pool.shutdown(wait=False)
    return future


def wait_for_first_counts(pipeline: Pipeline, service: str) -> None:
    pipeline.wait_for(f'sum(cugar_executions_total{{job="{service}"}})',
                      lambda r: total(r) > 0, SETTLE_S)


def assert_counts_exact(pipeline: Pipeline, service: str, truth: dict) -> None:
    """Totals, outcomes and the window increase equal the ground truth; no counter reset."""
    job = q.eq("job", service)
    checks = {
        f"sum({q.select(catalogue.EXECUTIONS, matchers=[job])})": truth["executions"],
        f'sum({q.select(catalogue.EXECUTIONS, matchers=[job, q.eq("outcome", "failure")])})':
            truth["failed"],
        f"sum({q.select(catalogue.TOOL_CALLS, matchers=[job])})": truth["tool_calls"],
        # Over the gap: anchored increase counts every execution once (no extrapolation, no
        # double count from points re-sent after the outage).
        q.count(catalogue.EXECUTIONS, "10m", matchers=[job]): truth["executions"],
        f"sum(resets({q.select(catalogue.EXECUTIONS, matchers=[job])}[10m])) or vector(0)": 0,
    }
    for promql, expected in checks.items():
        try:
            pipeline.wait_for(promql, lambda r, e=expected: total(r) == e, SETTLE_S)
        except TimeoutError:
            pytest.fail(f"{promql}: expected {expected}, Prometheus has "
                        f"{total(pipeline.query(promql))}", pytrace=False)


def active_alerts(pipeline: Pipeline, start: float, end: float) -> dict[str, list[dict]]:
    """alertname -> the label sets of the alerts Prometheus had pending or firing at some
    evaluation in [start, end]: the ALERTS series is written at every evaluation where a rule's
    expression holds, so this is the rules' own verdict, live, with `for:` not yet applied.

    (Evaluating the expressions afterwards with a range query is not the same: the recording
    rules they read were not evaluated while Prometheus was down, and points that arrived late
    were not there when the rules ran.)"""
    active: dict[str, list[dict]] = {}
    for s in pipeline.prometheus.query_range("ALERTS", start, end, 1):
        labels = {k: v for k, v in s["metric"].items() if k not in ("__name__", "alertname")}
        active.setdefault(s["metric"]["alertname"], []).append(labels)
    return active


def firing(active: dict[str, list[dict]]) -> set[str]:
    return {name for name, series in active.items()
            if any(s["alertstate"] == "firing" for s in series)}


def wait_for_traffic_seen(pipeline: Pipeline) -> float:
    """The instant from which NoRecentExecutions has nothing to say (the rules saw traffic)."""
    pipeline.wait_for('ALERTS{alertname="NoRecentExecutions"}', lambda r: not r, SETTLE_S)
    return time.time()


def intended_agent_alerts(budget_exceeded: list[int]) -> set[str]:
    budget = ALERTS["FrequentBudgetExceeded"]
    return {budget.name} if sum(budget_exceeded) > budget.threshold else set()


def test_prometheus_restarted_mid_load_counts_exactly_and_raises_no_alert(
        pipeline: Pipeline, run_agent: Callable[..., dict], budget_exceeded: list[int]) -> None:
    service = "cugar-prometheus-restart"
    load = start_load(pipeline, run_agent, service, seed=41)
    wait_for_first_counts(pipeline, service)
    start = wait_for_traffic_seen(pipeline)
    prometheus = pipeline.process("prometheus")
    prometheus.stop()
    time.sleep(3)  # the outage: the collector's exporter retries into nothing meanwhile
    prometheus.start()  # the same config and TSDB directory
    truth = load.result(timeout=240)
    assert truth["executions"] == RATE * DURATION_S, truth
    budget_exceeded.append(truth["budget_exceeded"])
    assert_counts_exact(pipeline, service, truth)

    active = active_alerts(pipeline, start, time.time())
    assert set(active) <= intended_agent_alerts(budget_exceeded), active


def test_jaeger_down_mid_load_loses_no_metric_and_counts_the_failed_spans(
        pipeline: Pipeline, run_agent: Callable[..., dict], budget_exceeded: list[int]) -> None:
    service = "cugar-jaeger-down"
    load = start_load(pipeline, run_agent, service, seed=42)
    wait_for_first_counts(pipeline, service)
    start = wait_for_traffic_seen(pipeline)
    pipeline.process("jaeger").stop()
    truth = load.result(timeout=240)
    assert truth["executions"] == RATE * DURATION_S, truth  # the agents did not notice
    budget_exceeded.append(truth["budget_exceeded"])
    assert_counts_exact(pipeline, service, truth)

    # The spans the collector could not deliver are counted, and every span it accepted is
    # accounted for: sent or counted as failed (none silently gone) once its queue is empty.
    failed_spans = f'sum({q.collector(q.EXPORTER_SEND_FAILED["traces"])})'
    pipeline.wait_for(failed_spans, lambda r: total(r) > 0, SETTLE_S)
    accounted = (f'sum({q.collector(q.RECEIVER_ACCEPTED["traces"])}) - '
                 f'sum({q.collector(q.EXPORTER_SENT["traces"])}) - {failed_spans}')
    pipeline.wait_for(accounted, lambda r: total(r) == 0, SETTLE_S)

    # The two alerts this fault is meant to raise, pending (their `for:` is 5m and 2m)...
    intended = {"CollectorExportFailing", "ScrapeTargetDown"}
    pipeline.wait_for('ALERTS{alertname="CollectorExportFailing"}', bool, SETTLE_S)
    pipeline.wait_for('ALERTS{alertname="ScrapeTargetDown"}', bool, SETTLE_S)
    active = active_alerts(pipeline, start, time.time())
    assert intended <= set(active) <= intended | intended_agent_alerts(budget_exceeded), active
    assert {(s["signal"], s["exporter"]) for s in active["CollectorExportFailing"]} == {
        ("traces", "otlp_grpc/traces")}
    assert {s["job"] for s in active["ScrapeTargetDown"]} == {"jaeger"}
    # ... and nothing has fired yet.
    assert firing(active) <= intended_agent_alerts(budget_exceeded), active
