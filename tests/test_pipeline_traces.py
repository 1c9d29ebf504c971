"""End to end: spans from the simulated agent, through our collector, read back from Jaeger's
query API (/api/v3/traces). They follow the GenAI agent conventions, account for every execution and tool call
of the ground truth, carry every canonical event, and contain no PII canary (the agent puts
contact e-mail addresses in goals, tool arguments and error messages on purpose) — neither
with content capture disabled (nothing captured) nor enabled (captured, redacted)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable

import pytest

from otel import catalogue
from services.stack.pipeline import Pipeline
from services.stack.process import wait_until

pytestmark = pytest.mark.integration

AGENT = "cugar-sales"
SPAN_KIND_INTERNAL = 1
STATUS_ERROR = 2
CONTENT_KEYS = {"gen_ai.input.messages", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result"}
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
CAPTURE = {"capture-off": "false", "capture-on": "true"}


@pytest.fixture(scope="module")
def runs(pipeline: Pipeline, run_agent: Callable[..., dict]) -> dict[str, tuple[dict, list]]:
    """service name -> (ground truth, exported spans), one run per capture setting."""
    truths = {}
    for service, capture in CAPTURE.items():
        truths[service] = run_agent(
            pipeline, "--executions", "60", "--processes", "2", "--seed", "21",
            "--time-scale", "0", "--fail", "governance=0.5", "--fail", "engagement=0.3",
            "--approval-timeout-rate", "0.2", "--approval-reject-rate", "0.2",
            env={"OTEL_SERVICE_NAME": service,
                 "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": capture})

    def complete() -> bool:
        return all(sum(s["name"].startswith("invoke_agent ") for s in pipeline.spans(service))
                   >= truths[service]["executions"] for service in CAPTURE)

    wait_until(complete, 30, interval=0.5, what="every execution's span in Jaeger")
    return {service: (truths[service], pipeline.spans(service)) for service in CAPTURE}


def _kinds(spans: list[dict], operation: str) -> list[dict]:
    return [s for s in spans if s["attrs"].get("gen_ai.operation.name") == operation]


@pytest.mark.parametrize("service", CAPTURE)
def test_spans_follow_genai_agent_conventions(runs: dict, service: str) -> None:
    truth, spans = runs[service]
    executions = _kinds(spans, "invoke_agent")
    tools = _kinds(spans, "execute_tool")
    assert len(executions) == truth["executions"]
    assert len(tools) == truth["tool_calls"]
    for span in executions:
        assert span["name"] == f"invoke_agent {AGENT}"
        assert span["kind"] == SPAN_KIND_INTERNAL
        assert span["attrs"]["gen_ai.agent.name"] == AGENT
    failed = [s for s in executions if s.get("status", {}).get("code") == STATUS_ERROR]
    assert len(failed) == truth["failed"]
    assert all(s["attrs"].get("error.type") for s in failed)
    for span in tools:
        assert span["kind"] == SPAN_KIND_INTERNAL
        assert span["name"] == f"execute_tool {span['attrs']['gen_ai.tool.name']}"
    errors = Counter(s["attrs"]["error.type"] for s in tools if "error.type" in s["attrs"])
    assert errors == Counter(truth["error_types"])
    assert all(s["status"].get("code") == STATUS_ERROR for s in tools if "error.type" in s["attrs"])


@pytest.mark.parametrize("service", CAPTURE)
def test_tool_calls_and_approvals_belong_to_their_execution(runs: dict, service: str) -> None:
    _, spans = runs[service]
    by_id = {s["spanId"]: s for s in spans}
    executions = {s["spanId"] for s in _kinds(spans, "invoke_agent")}
    children = _kinds(spans, "execute_tool") + _kinds(spans, "approval")
    assert children
    for span in children:
        parent = by_id.get(span.get("parentSpanId", ""))
        while parent is not None and parent["spanId"] not in executions:
            parent = by_id.get(parent.get("parentSpanId", ""))
        assert parent is not None, f"{span['name']} has no invoke_agent ancestor"
        assert parent["traceId"] == span["traceId"]


@pytest.mark.parametrize("service", CAPTURE)
def test_every_canonical_event_is_recorded(runs: dict, service: str) -> None:
    truth, spans = runs[service]
    assert truth["budget_exceeded"] and truth["budget_warnings"] and truth["tool_errors"]
    assert truth["approvals"]["timeout"], "workload has no approval timeout; pick another seed"
    seen = Counter(event["name"] for span in spans for event in span["events"])
    missing = set(catalogue.CANONICAL_EVENTS) - set(seen)
    assert not missing, f"canonical events missing from the exported spans: {missing}"
    assert seen["plan_created"] == truth["executions"]
    assert seen["tool_call_start"] == truth["tool_calls"]
    assert seen["tool_call_error"] == truth["tool_errors"]
    assert seen["approval_timeout"] == truth["approvals"]["timeout"]
    assert seen["budget_exceeded"] == truth["budget_exceeded"]


def test_no_pii_canary_reaches_the_trace_backend(runs: dict) -> None:
    text = json.dumps([spans for _, spans in runs.values()])
    leaked = sorted({m.group(0) for m in EMAIL.finditer(text)})
    assert not leaked, f"e-mail addresses reached the trace backend: {leaked[:5]}"


def test_content_is_captured_only_on_opt_in(runs: dict) -> None:
    _, off = runs["capture-off"]
    captured_off = {k for s in off for k in s["attrs"] if k in CONTENT_KEYS}
    assert not captured_off, f"content captured without opt-in: {captured_off}"
    _, on = runs["capture-on"]
    captured_on = [s["attrs"][k] for s in on for k in CONTENT_KEYS if k in s["attrs"]]
    assert {k for s in on for k in s["attrs"] if k in CONTENT_KEYS} == CONTENT_KEYS
    # The agent puts a contact e-mail in every tool call's arguments: captured, but redacted.
    arguments = [s["attrs"]["gen_ai.tool.call.arguments"] for s in _kinds(on, "execute_tool")]
    assert arguments and all("contact_email" in a and not EMAIL.search(a) for a in arguments)
    assert all(not EMAIL.search(value) for value in captured_on)
