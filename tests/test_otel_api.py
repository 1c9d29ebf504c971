"""Scripted executions produce exactly the expected spans and metric points."""

from __future__ import annotations

import asyncio
import time

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from otel import catalogue
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
    EXECUTION_DURATION,
    EXECUTION_STEPS,
    EXECUTIONS,
    TOOL_CALL_DURATION,
    TOOL_CALLS,
    TOOL_ERRORS,
)
from otel.testing import in_memory_telemetry, last_points, total


@pytest.fixture
def mem():
    tel, spans, metrics = in_memory_telemetry()
    yield tel, spans, metrics
    tel.shutdown()


def run_script(agent):
    """Three executions covering every API path; expected results are asserted below."""
    with agent.execution(profile="smb", agent_name="cugar-sales", budget_ceiling=100) as ex:
        ex.plan_created(steps=3)
        ex.route_decision(domain="intelligence")
        with ex.tool_call("crm_lookup", domain="intelligence", side_effect="read-only"):
            pass
        with pytest.raises(RuntimeError):
            with ex.tool_call("send_email", domain="engagement", side_effect="execute"):
                raise RuntimeError("smtp down")
        with ex.tool_call("score_lead", domain="qualification", side_effect="propose") as call:
            call.error("RateLimited")
        ex.spend(50)
        ex.spend(35)  # 85% -> budget_warning
        with ex.approval(tool="send_email") as ap:
            ap.approve()
        ex.spend(20)  # 105% -> budget_exceeded
    with agent.execution(profile="no_such_profile", agent_name="cugar-sales") as ex:
        with ex.tool_call("crm_lookup", domain="astrology"):
            pass
        with ex.approval(tool="delete_account"):
            pass  # no decision -> timeout
        with ex.approval(tool="discount") as ap:
            ap.reject()
        ex.fail("customer hung up")
    with pytest.raises(KeyError):
        with agent.execution(profile="enterprise", agent_name="cugar-sales", budget_ceiling=10):
            raise KeyError("missing account")


def test_spans_are_exactly_the_script(mem):
    tel, spans, _ = mem
    run_script(tel.agent)
    assert tel.force_flush()
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == [
        "execute_tool crm_lookup", "execute_tool send_email", "execute_tool score_lead",
        "approval send_email", "invoke_agent cugar-sales",
        "execute_tool crm_lookup", "approval delete_account", "approval discount",
        "invoke_agent cugar-sales",
        "invoke_agent cugar-sales",
    ]
    assert all(s.kind is SpanKind.INTERNAL for s in finished)
    roots = [s for s in finished if s.name.startswith("invoke_agent")]
    assert all(s.parent is None for s in roots)
    assert len({s.context.trace_id for s in roots}) == 3
    for child in finished[:4]:
        assert child.parent.span_id == roots[0].context.span_id
        assert child.context.trace_id == roots[0].context.trace_id
        assert child.start_time >= roots[0].start_time and child.end_time <= roots[0].end_time
    for child in finished[5:8]:
        assert child.parent.span_id == roots[1].context.span_id

    ok, raised, explicit = finished[0], finished[1], finished[2]
    assert dict(ok.attributes) == {
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "crm_lookup",
        "gen_ai.tool.type": "function", "cugar.domain": "intelligence",
        "cugar.side_effect": "read-only"}
    assert ok.status.status_code is StatusCode.UNSET
    assert [e.name for e in ok.events] == ["tool_call_start", "tool_call_complete"]
    assert raised.attributes["error.type"] == "RuntimeError"
    assert raised.status.status_code is StatusCode.ERROR
    assert "smtp down" in raised.status.description
    assert [e.name for e in raised.events] == ["tool_call_start", "tool_call_error", "exception"]
    assert explicit.attributes["error.type"] == "RateLimited"
    assert explicit.status.status_code is StatusCode.ERROR
    assert [e.name for e in explicit.events] == ["tool_call_start", "tool_call_error"]

    approval = finished[3]
    assert approval.attributes["cugar.approval.decision"] == "approved"
    assert [e.name for e in approval.events] == ["approval_requested", "approval_received"]

    first = roots[0]
    assert first.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert first.attributes["gen_ai.agent.name"] == "cugar-sales"
    assert first.attributes["cugar.profile"] == "smb"
    assert first.attributes["cugar.outcome"] == "success"
    assert first.attributes["cugar.steps"] == 3
    assert first.attributes["cugar.budget.used"] == 105
    assert first.attributes["cugar.budget.utilization"] == pytest.approx(1.05)
    assert first.status.status_code is StatusCode.UNSET
    assert [e.name for e in first.events] == [
        "plan_created", "route_decision", "budget_warning", "budget_exceeded"]
    assert dict(first.events[0].attributes) == {"cugar.plan.steps": 3}
    assert dict(first.events[1].attributes) == {"cugar.domain": "intelligence"}

    second = roots[1]
    assert second.attributes["cugar.profile"] == catalogue.OTHER
    assert second.attributes["cugar.outcome"] == "failure"
    assert second.status.status_code is StatusCode.ERROR
    assert second.status.description == "customer hung up"
    assert finished[5].attributes["cugar.domain"] == catalogue.OTHER
    assert [e.name for e in finished[6].events] == ["approval_requested", "approval_timeout"]
    assert finished[6].attributes["cugar.approval.decision"] == "timeout"
    assert finished[7].attributes["cugar.approval.decision"] == "rejected"

    third = roots[2]
    assert third.attributes["error.type"] == "KeyError"
    assert third.attributes["cugar.steps"] == 0
    assert third.status.status_code is StatusCode.ERROR


def test_every_canonical_event_lands_in_traces(mem):
    tel, spans, _ = mem
    run_script(tel.agent)
    tel.force_flush()
    seen = {e.name for s in spans.get_finished_spans() for e in s.events}
    assert set(catalogue.CANONICAL_EVENTS) <= seen


def test_metric_points_are_exactly_the_script(mem):
    tel, _, metrics = mem
    run_script(tel.agent)
    assert tel.force_flush()
    p = last_points(metrics)

    def series(spec):
        return {tuple(sorted(k)): v for k, v in p[spec.name].items()}

    assert series(EXECUTIONS) == {
        (("outcome", "success"), ("profile", "smb")): 1,
        (("outcome", "failure"), ("profile", "other")): 1,
        (("outcome", "failure"), ("profile", "enterprise")): 1,
    }
    assert "cugar_executions_successful" not in p and "cugar_executions_failed" not in p
    assert series(TOOL_CALLS) == {
        (("domain", "intelligence"), ("outcome", "success"), ("side_effect", "read-only"),
         ("tool", "crm_lookup")): 1,
        (("domain", "engagement"), ("outcome", "error"), ("side_effect", "execute"),
         ("tool", "send_email")): 1,
        (("domain", "qualification"), ("outcome", "error"), ("side_effect", "propose"),
         ("tool", "score_lead")): 1,
        (("domain", "other"), ("outcome", "success"), ("side_effect", "read-only"),
         ("tool", "crm_lookup")): 1,
    }
    assert series(TOOL_ERRORS) == {
        (("domain", "engagement"), ("error.type", "RuntimeError"), ("tool", "send_email")): 1,
        (("domain", "qualification"), ("error.type", "RateLimited"), ("tool", "score_lead")): 1,
    }
    assert series(DOMAIN_USAGE) == {
        (("domain", d),): 1 for d in ("intelligence", "engagement", "qualification", "other")}
    assert series(DOMAIN_ERRORS) == {
        (("domain", "engagement"),): 1, (("domain", "qualification"),): 1}
    assert series(BUDGET_USED) == {(("profile", "smb"),): 105}
    assert series(BUDGET_WARNINGS) == {(("profile", "smb"),): 1}
    assert series(BUDGET_EXCEEDED) == {(("profile", "smb"),): 1}
    assert series(APPROVALS) == {
        (("decision", "approved"),): 1, (("decision", "timeout"),): 1,
        (("decision", "rejected"),): 1}
    assert series(APPROVAL_TIMEOUTS) == {(): 1}

    steps = series(EXECUTION_STEPS)
    assert {k: (v.count, v.sum) for k, v in steps.items()} == {
        (("outcome", "success"), ("profile", "smb")): (1, 3),
        (("outcome", "failure"), ("profile", "other")): (1, 1),
        (("outcome", "failure"), ("profile", "enterprise")): (1, 0),
    }
    util = series(BUDGET_UTILIZATION)
    assert {k: (v.count, round(v.sum, 6)) for k, v in util.items()} == {
        (("profile", "smb"),): (1, 1.05), (("profile", "enterprise"),): (1, 0.0)}
    assert total(p[EXECUTION_DURATION.name]) == 3
    assert total(p[TOOL_CALL_DURATION.name]) == 4
    assert total(p[APPROVAL_WAIT.name]) == 3


def test_durations_use_the_monotonic_clock_in_seconds(mem):
    tel, spans, metrics = mem
    with tel.agent.execution(profile="demo", agent_name="a") as ex:
        with ex.approval(tool="t") as ap:
            time.sleep(0.03)  # the workload: a human taking 30 ms to decide
            ap.approve()
    tel.force_flush()
    assert APPROVAL_WAIT.unit == EXECUTION_DURATION.unit == TOOL_CALL_DURATION.unit == "s"
    wait = next(iter(last_points(metrics)[APPROVAL_WAIT.name].values()))
    assert 0.03 <= wait.sum < 3, "approval wait must be in seconds"
    span = spans.get_finished_spans()[0]
    assert span.attributes["cugar.approval.wait_ms"] == pytest.approx(wait.sum * 1000)
    assert (span.end_time - span.start_time) / 1e9 == pytest.approx(wait.sum, abs=0.0005)
    duration = next(iter(last_points(metrics)[EXECUTION_DURATION.name].values()))
    assert duration.sum >= wait.sum


async def test_async_context_managers_and_decorators(mem):
    tel, spans, metrics = mem
    agent = tel.agent

    @agent.tool("fetch_news", domain="intelligence")
    async def fetch(n):
        await asyncio.sleep(0)
        return n

    @agent.tool(domain="knowledge", side_effect="read-only")
    def lookup(x):
        return x * 2

    @agent.tool("flaky", domain="territory")
    async def flaky():
        raise TimeoutError("upstream")

    @agent.execution_function(profile="technical", agent_name="researcher", budget_ceiling=10)
    async def research():
        ex = agent.current_execution()
        results = await asyncio.gather(fetch(1), fetch(2))
        lookup(3)
        with pytest.raises(TimeoutError):
            await flaky()
        async with ex.approval(tool="publish") as ap:
            ap.approve()
        ex.spend(9)
        return results

    assert await research() == [1, 2]
    async with agent.execution(profile="demo", agent_name="manual") as ex:
        async with ex.tool_call("direct", domain="governance") as call:
            call.set_result("ok")
    assert agent.current_execution() is None
    tel.force_flush()

    by_name = {}
    for s in spans.get_finished_spans():
        by_name.setdefault(s.name, []).append(s)
    root = by_name["invoke_agent researcher"][0]
    assert root.attributes["cugar.steps"] == 4
    assert root.attributes["cugar.outcome"] == "success"
    assert [e.name for e in root.events] == ["budget_warning"]
    assert len(by_name["execute_tool fetch_news"]) == 2
    assert by_name["execute_tool lookup"][0].parent.span_id == root.context.span_id
    assert by_name["execute_tool flaky"][0].attributes["error.type"] == "TimeoutError"
    assert by_name["approval publish"][0].parent.span_id == root.context.span_id
    assert by_name["execute_tool direct"][0].parent.span_id == \
        by_name["invoke_agent manual"][0].context.span_id

    p = last_points(metrics)
    assert total(p[TOOL_CALLS.name], tool="fetch_news") == 2
    assert total(p[TOOL_ERRORS.name], tool="flaky", **{"error.type": "TimeoutError"}) == 1
    assert total(p[EXECUTIONS.name], profile="technical", outcome="success") == 1


def test_tool_call_outside_an_execution_is_still_recorded(mem):
    tel, spans, metrics = mem

    @tel.agent.tool("standalone", domain="knowledge")
    def standalone():
        return 1

    assert standalone() == 1
    tel.force_flush()
    (span,) = spans.get_finished_spans()
    assert span.name == "execute_tool standalone" and span.parent is None
    assert total(last_points(metrics)[TOOL_CALLS.name], tool="standalone") == 1


def test_execution_joins_the_ambient_trace_and_is_current_inside(mem):
    tel, spans, _ = mem
    tracer = tel.tracer_provider.get_tracer("test")
    from opentelemetry import trace

    with tracer.start_as_current_span("http request") as outer:
        with tel.agent.execution(profile="demo", agent_name="a") as ex:
            with ex.tool_call("t", domain="knowledge"):
                inner_ctx = trace.get_current_span().get_span_context()
                with tracer.start_as_current_span("downstream call"):
                    pass
    tel.force_flush()
    by_name = {s.name: s for s in spans.get_finished_spans()}
    root = by_name["invoke_agent a"]
    assert root.context.trace_id == outer.get_span_context().trace_id
    assert root.parent.span_id == outer.get_span_context().span_id
    assert ex.trace_id == format(outer.get_span_context().trace_id, "032x")
    assert inner_ctx.span_id == by_name["execute_tool t"].context.span_id
    assert by_name["downstream call"].parent.span_id == inner_ctx.span_id


def test_bad_input_is_counted_and_never_raised(mem):
    tel, _, metrics = mem
    with tel.agent.execution(profile=None, agent_name=None, budget_ceiling=-5) as ex:
        ex.spend(-1)
        ex.spend(float("nan"))
        ex.spend("ten")
        ex.plan_created(steps="many")
        ex.route_decision(domain=42)
        with ex.tool_call(None, domain=None, side_effect="destroy") as call:
            call.error(None)
        ex.spend(2)
    tel.force_flush()
    stats = tel.stats()
    assert stats["invalid_input"] == 4
    assert stats["internal_errors"] == 0
    p = last_points(metrics)
    assert total(p[BUDGET_USED.name]) == 2
    assert total(p[TOOL_CALLS.name], tool="other", domain="other",
                 side_effect="other", outcome="error") == 1
    assert total(p[EXECUTIONS.name], profile="other", outcome="success") == 1
