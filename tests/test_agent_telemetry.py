"""The simulated agent through the real telemetry library, exported to memory.

The contract the integration tests rely on: what the metrics say equals, exactly, the agent's
own ground-truth summary.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from otel.catalogue import (
    APPROVAL_TIMEOUTS,
    APPROVAL_WAIT,
    APPROVALS,
    BUDGET_EXCEEDED,
    BUDGET_USED,
    BUDGET_UTILIZATION,
    BUDGET_WARNINGS,
    DOMAIN_ERRORS,
    DOMAIN_USAGE,
    DOMAINS,
    ERROR_TYPE,
    EXECUTION_DURATION,
    EXECUTION_STEPS,
    EXECUTIONS,
    TOOL_CALL_DURATION,
    TOOL_CALLS,
    TOOL_ERRORS,
)
from otel.testing import in_memory_telemetry, last_points, total
from services.agent.scenario import SimulationConfig, script_for
from services.agent.stop import StopSignal
from services.agent.tools import TOOLS_BY_NAME
from services.agent.worker import Pacing, expected_summary, run_worker

RUN_EXECUTIONS = 400


# The run produces ~7 spans per execution with no pause (time scale 0); on a loaded machine the
# export thread may lag behind the default 2048-span queue and drop (counted) spans. These tests
# check exact trace content, so the queue holds the whole run; drops have their own tests.
WHOLE_RUN_QUEUE = {"OTEL_BSP_MAX_QUEUE_SIZE": "100000"}


def play(config: SimulationConfig, pacing: Pacing, env: dict[str, str] | None = None):
    tel, spans, metrics = in_memory_telemetry(env={**WHOLE_RUN_QUEUE, **(env or {})})
    try:
        summary = asyncio.run(run_worker(tel.agent, config, pacing, 0, StopSignal()))
        assert tel.force_flush(5000)
        assert tel.stats()["spans_dropped"] == 0
    finally:
        tel.shutdown()
    return summary, spans.get_finished_spans(), last_points(metrics)


@pytest.fixture(scope="module")
def played():
    config = SimulationConfig(seed=21, error_rates={"intelligence": 0.3})
    pacing = Pacing(executions=RUN_EXECUTIONS, time_scale=0, concurrency=16)
    summary, spans, points = play(config, pacing)
    return config, pacing, summary, spans, points


def test_ground_truth_equals_the_planned_run(played) -> None:
    config, pacing, summary, _, _ = played
    assert summary.pop("interrupted") is False
    assert summary == expected_summary(config, pacing)


def test_execution_metrics_equal_the_ground_truth(played) -> None:
    _, _, s, _, m = played
    executions = m[EXECUTIONS.name]
    assert total(executions) == s["executions"]
    assert total(executions, outcome="success") == s["successful"]
    assert total(executions, outcome="failure") == s["failed"]
    for profile, p in s["by_profile"].items():
        assert total(executions, profile=profile) == p["executions"]
        assert total(executions, profile=profile, outcome="failure") == p["failed"]
        assert total(m[BUDGET_USED.name], profile=profile) == p["budget_used"]
    assert total(m[EXECUTION_DURATION.name]) == s["executions"]
    steps = m[EXECUTION_STEPS.name]
    assert total(steps) == s["executions"]
    assert sum(p.sum for p in steps.values()) == s["steps"]


def test_tool_and_domain_metrics_equal_the_ground_truth(played) -> None:
    _, _, s, _, m = played
    calls, errors = m[TOOL_CALLS.name], m[TOOL_ERRORS.name]
    assert total(calls) == s["tool_calls"]
    assert total(calls, outcome="error") == total(errors) == s["tool_errors"]
    assert total(m[TOOL_CALL_DURATION.name]) == s["tool_calls"]
    for domain in DOMAINS:
        d = s["by_domain"][domain]
        assert total(calls, domain=domain) == d["calls"]
        assert total(m[DOMAIN_USAGE.name], domain=domain) == d["calls"]
        assert total(m.get(DOMAIN_ERRORS.name, {}), domain=domain) == d["errors"]
    for tool, t in s["by_tool"].items():
        assert total(calls, tool=tool, side_effect=TOOLS_BY_NAME[tool].side_effect) == t["calls"]
        assert total(errors, tool=tool) == t["errors"]
    for error_type, n in s["error_types"].items():
        assert total(errors, **{ERROR_TYPE: error_type}) == n
    assert s["by_domain"]["intelligence"]["errors"] > 0  # injected, so the check has teeth


def test_budget_and_approval_metrics_equal_the_ground_truth(played) -> None:
    config, pacing, s, _, m = played
    assert total(m[BUDGET_USED.name]) == s["budget_used"]  # exact: quarter units
    assert total(m[BUDGET_WARNINGS.name]) == s["budget_warnings"] > 0
    assert total(m[BUDGET_EXCEEDED.name]) == s["budget_exceeded"] > 0
    utilization = m[BUDGET_UTILIZATION.name]
    assert total(utilization) == s["executions"]
    scripts = [script_for(i, config) for i in pacing.indices(0)]
    assert sum(p.sum for p in utilization.values()) == pytest.approx(
        sum(x.spent / x.profile.budget_ceiling for x in scripts), rel=1e-12)
    approvals = m[APPROVALS.name]
    for decision, n in s["approvals"].items():
        assert total(approvals, decision=decision) == n
    assert total(m[APPROVAL_WAIT.name]) == sum(s["approvals"].values())
    assert total(m.get(APPROVAL_TIMEOUTS.name, {})) == s["approvals"]["timeout"]


def test_spans_and_canonical_events_match_the_ground_truth(played) -> None:
    _, _, s, spans, _ = played
    by_op: dict[str, list] = {}
    for span in spans:
        by_op.setdefault(span.attributes["gen_ai.operation.name"], []).append(span)
    agents, tools = by_op["invoke_agent"], by_op["execute_tool"]
    assert len(agents) == s["executions"]
    assert len(tools) == s["tool_calls"]
    assert len(by_op["approval"]) == sum(s["approvals"].values())
    assert sum(x.attributes["cugar.outcome"] == "failure" for x in agents) == s["failed"]
    assert sum("error.type" in x.attributes for x in tools) == s["tool_errors"]
    events = [e.name for x in spans for e in x.events]
    assert events.count("plan_created") == s["executions"]
    assert events.count("budget_warning") == s["budget_warnings"]
    assert events.count("budget_exceeded") == s["budget_exceeded"]
    assert events.count("tool_call_error") == s["tool_errors"]
    assert events.count("approval_timeout") == s["approvals"]["timeout"]
    reasons = {x.attributes.get("error.type") for x in agents} - {None}
    assert reasons <= set(s["failure_reasons"])
    parents = {x.context.span_id for x in agents}
    assert all(x.parent is not None and x.parent.span_id in parents for x in tools)


@pytest.mark.parametrize("capture", ["false", "true"])
def test_contact_emails_never_leave_the_process(capture: str) -> None:
    config = SimulationConfig(seed=5)
    _, spans, _ = play(config, Pacing(executions=30, time_scale=0),
                       {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": capture})
    exported = json.dumps([json.loads(x.to_json()) for x in spans])
    emails = {script_for(i, config).contact_email for i in range(30)}
    assert not [e for e in emails if e in exported]
    accounts_seen = any(script_for(i, config).account in exported for i in range(30))
    assert accounts_seen == (capture == "true")  # content is captured only on opt-in


def test_time_scale_paces_executions_and_overlaps_them() -> None:
    # 8 executions in flight at once: wall time is far below the sum of their simulated waits,
    # and the measured durations are the simulated ones, scaled (the metrics are in seconds,
    # the simulation's waits in milliseconds).
    scale, n = 0.02, 16
    config = SimulationConfig(seed=3)
    pacing = Pacing(executions=n, time_scale=scale, concurrency=8)
    tel, _, metrics = in_memory_telemetry()
    loop = asyncio.new_event_loop()
    try:
        started = loop.time()
        loop.run_until_complete(run_worker(tel.agent, config, pacing, 0, StopSignal()))
        wall = loop.time() - started
        assert tel.force_flush(5000)
    finally:
        loop.close()
        tel.shutdown()
    scripts = [script_for(i, config) for i in range(n)]
    approval_ms = sum(st.approval.wait_ms for x in scripts for st in x.steps if st.approval)
    simulated_ms = approval_ms + sum(
        x.planning_ms + sum(a.latency_ms for st in x.steps for a in st.attempts) for x in scripts)
    assert simulated_ms * scale / 8 <= wall * 1000 < simulated_ms * scale / 2
    m = last_points(metrics)
    measured_ms = 1000 * sum(p.sum for p in m[EXECUTION_DURATION.name].values())
    assert simulated_ms * scale * 0.99 <= measured_ms < simulated_ms * scale * 1.5 + n * 50
    waited_ms = 1000 * sum(p.sum for p in m[APPROVAL_WAIT.name].values())
    assert approval_ms * scale * 0.99 <= waited_ms < approval_ms * scale * 1.5 + n * 20
