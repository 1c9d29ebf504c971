"""Telemetry overhead per agent execution: ours vs naive OpenTelemetry vs prometheus_client.

Reference execution: 1 execution (plan + route events), 4 tool calls, 4 budget spends (the
fourth crosses the 80% warning), 1 approval. Every variant records the same facts; the
only difference is how. Variants run interleaved in the same process (rounds in shuffled
order) and the median per-execution time of each is reported, so machine noise hits all
variants alike. Span/metric exporters of both OpenTelemetry variants are the same no-op
sink (or, with --sink unreachable, OTLP to a closed loopback port).

    python -m bench.overhead --json
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import platform
import random
import statistics
import sys
import time
from typing import Callable

from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_AGENT_NAME,
    GEN_AI_OPERATION_NAME,
    GEN_AI_TOOL_NAME,
    GEN_AI_TOOL_TYPE,
    GenAiOperationNameValues,
)

from otel import catalogue as c
from otel.testing import CountingSpanExporter, DiscardingMetricExporter
from services.stack.process import free_port

PROFILE, AGENT, CEILING, SPEND = "smb", "cugar-sales", 100.0, 21.0
_INVOKE_AGENT = GenAiOperationNameValues.INVOKE_AGENT.value
_EXECUTE_TOOL = GenAiOperationNameValues.EXECUTE_TOOL.value
# The catalogue metrics the reference execution records (the order the variants unpack).
RECORDED = (c.EXECUTIONS, c.TOOL_CALLS, c.DOMAIN_USAGE, c.TOOL_CALL_DURATION, c.BUDGET_USED,
            c.BUDGET_WARNINGS, c.APPROVALS, c.APPROVAL_WAIT, c.EXECUTION_DURATION,
            c.EXECUTION_STEPS, c.BUDGET_UTILIZATION)
TOOLS = (
    ("crm_lookup", "intelligence", "read-only"),
    ("territory_map", "territory", "read-only"),
    ("draft_email", "engagement", "propose"),
    ("score_lead", "qualification", "execute"),
)


def work(i: int) -> int:
    """The agent's own (tiny) work per tool call; identical in every variant."""
    return (i * 31 + 7) % 1009


def sinks(kind: str) -> tuple[Callable[[], SpanExporter], Callable[[], MetricExporter]]:
    if kind == "noop":
        return CountingSpanExporter, DiscardingMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    return (lambda: OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=1),
            lambda: OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=1))


# --- variants -------------------------------------------------------------------------------

def variant_none() -> tuple[Callable[[int], None], Callable[[], None]]:
    def run(i: int) -> None:
        spent = 0.0
        for _ in TOOLS:
            work(i)
            spent += SPEND
    return run, lambda: None


def variant_ours(span_sink, metric_sink, tracing: bool):
    from otel.setup import create_telemetry

    env = {"OTEL_SERVICE_NAME": "bench", "OTEL_TRACES_SAMPLER": "always_on"}
    if not tracing:
        env["OTEL_TRACES_EXPORTER"] = "none"
    tel = create_telemetry(env=env, span_exporter=span_sink(), metric_exporter=metric_sink())
    agent = tel.agent

    def run(i: int) -> None:
        with agent.execution(profile=PROFILE, agent_name=AGENT, budget_ceiling=CEILING) as ex:
            ex.plan_created(steps=len(TOOLS))
            ex.route_decision(domain=TOOLS[0][1])
            for tool, domain, side_effect in TOOLS:
                with ex.tool_call(tool, domain=domain, side_effect=side_effect) as call:
                    call.set_result(work(i))
                ex.spend(SPEND)
            with ex.approval(tool="send_email") as ap:
                ap.approve()
    return run, tel.shutdown


def variant_naive_otel(span_sink, metric_sink):
    """The OpenTelemetry SDK used the way its documentation shows."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": "bench-naive"})
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(BatchSpanProcessor(span_sink()))
    views = [View(instrument_name=m.name, aggregation=ExplicitBucketHistogramAggregation(
        [float(b) for b in m.buckets])) for m in c.METRICS if m.buckets]
    mp = MeterProvider(resource=resource, views=views,
                       metric_readers=[PeriodicExportingMetricReader(metric_sink())])
    tracer = tp.get_tracer(c.INSTRUMENTATION_SCOPE)
    meter = mp.get_meter(c.INSTRUMENTATION_SCOPE)

    def instrument(spec: c.MetricSpec):
        create = meter.create_counter if spec.kind is c.Kind.COUNTER else meter.create_histogram
        return create(spec.name, unit=spec.unit, description=spec.description)

    (executions, tool_calls, domain_usage, tool_s, budget_used, warnings, approvals, wait_s,
     exec_s, steps_h, util_h) = map(instrument, RECORDED)
    clock = time.perf_counter

    def run(i: int) -> None:
        t_exec = clock()
        with tracer.start_as_current_span(f"{_INVOKE_AGENT} {AGENT}", attributes={
                GEN_AI_OPERATION_NAME: _INVOKE_AGENT, GEN_AI_AGENT_NAME: AGENT,
                c.CUGAR_PROFILE: PROFILE, c.CUGAR_BUDGET_CEILING: CEILING}) as span:
            span.add_event(c.EVENT_PLAN_CREATED, {c.CUGAR_PLAN_STEPS: len(TOOLS)})
            span.add_event(c.EVENT_ROUTE_DECISION, {c.CUGAR_DOMAIN: TOOLS[0][1]})
            spent, steps, warned = 0.0, 0, False
            for tool, domain, side_effect in TOOLS:
                t0 = clock()
                with tracer.start_as_current_span(f"{_EXECUTE_TOOL} {tool}", attributes={
                        GEN_AI_OPERATION_NAME: _EXECUTE_TOOL, GEN_AI_TOOL_NAME: tool,
                        GEN_AI_TOOL_TYPE: c.TOOL_TYPE_FUNCTION, c.CUGAR_DOMAIN: domain,
                        c.CUGAR_SIDE_EFFECT: side_effect}) as tool_span:
                    tool_span.add_event(c.EVENT_TOOL_CALL_START)
                    work(i)
                    tool_span.add_event(c.EVENT_TOOL_CALL_COMPLETE)
                duration = clock() - t0
                tool_calls.add(1, {c.TOOL: tool, c.DOMAIN: domain, c.SIDE_EFFECT: side_effect,
                                   c.OUTCOME: "success"})
                domain_usage.add(1, {c.DOMAIN: domain})
                tool_s.record(duration, {c.TOOL: tool, c.DOMAIN: domain, c.OUTCOME: "success"})
                steps += 1
                spent += SPEND
                budget_used.add(SPEND, {c.PROFILE: PROFILE})
                if not warned and spent >= c.BUDGET_WARNING_RATIO * CEILING:
                    warned = True
                    warnings.add(1, {c.PROFILE: PROFILE})
                    span.add_event(c.EVENT_BUDGET_WARNING, {c.CUGAR_BUDGET_USED: spent,
                                                            c.CUGAR_BUDGET_CEILING: CEILING})
            t0 = clock()
            with tracer.start_as_current_span(f"{c.APPROVAL_OPERATION} send_email", attributes={
                    GEN_AI_OPERATION_NAME: c.APPROVAL_OPERATION,
                    c.CUGAR_APPROVAL_TOOL: "send_email"}) as ap:
                ap.add_event(c.EVENT_APPROVAL_REQUESTED, {c.CUGAR_APPROVAL_TOOL: "send_email"})
                waited = clock() - t0
                ap.set_attribute(c.CUGAR_APPROVAL_DECISION, "approved")
                ap.set_attribute(c.CUGAR_APPROVAL_WAIT_MS, waited * 1000)
                ap.add_event(c.EVENT_APPROVAL_RECEIVED, {c.CUGAR_APPROVAL_DECISION: "approved"})
            approvals.add(1, {c.DECISION: "approved"})
            wait_s.record(waited, {c.DECISION: "approved"})
            span.set_attributes({c.CUGAR_OUTCOME: "success", c.CUGAR_STEPS: steps,
                                 c.CUGAR_BUDGET_USED: spent,
                                 c.CUGAR_BUDGET_UTILIZATION: spent / CEILING})
        elapsed = clock() - t_exec
        outcome = {c.OUTCOME: "success", c.PROFILE: PROFILE}
        executions.add(1, outcome)
        exec_s.record(elapsed, outcome)
        steps_h.record(steps, outcome)
        util_h.record(spent / CEILING, {c.PROFILE: PROFILE})

    def stop() -> None:
        tp.shutdown()
        mp.shutdown()
    return run, stop


def variant_prometheus_client():
    """The same metrics with prometheus_client, labels passed positionally (its fast path)."""
    import prometheus_client as pc

    reg = pc.CollectorRegistry()

    def metric(spec: c.MetricSpec):
        name = spec.prometheus_name
        if spec.kind is c.Kind.COUNTER:
            return pc.Counter(name, spec.description, spec.labels, registry=reg)
        return pc.Histogram(name, spec.description, spec.labels, registry=reg,
                            buckets=[float(b) for b in spec.buckets])

    (executions, tool_calls, domain_usage, tool_s, budget_used, warnings, approvals, wait_s,
     exec_s, steps_h, util_h) = map(metric, RECORDED)
    clock = time.perf_counter

    def run(i: int) -> None:
        t_exec = clock()
        spent, steps, warned = 0.0, 0, False
        for tool, domain, side_effect in TOOLS:
            t0 = clock()
            work(i)
            duration = clock() - t0
            tool_calls.labels(tool, domain, side_effect, "success").inc()
            domain_usage.labels(domain).inc()
            tool_s.labels(tool, domain, "success").observe(duration)
            steps += 1
            spent += SPEND
            budget_used.labels(PROFILE).inc(SPEND)
            if not warned and spent >= c.BUDGET_WARNING_RATIO * CEILING:
                warned = True
                warnings.labels(PROFILE).inc()
        t0 = clock()
        waited = clock() - t0
        approvals.labels("approved").inc()
        wait_s.labels("approved").observe(waited)
        elapsed = clock() - t_exec
        executions.labels("success", PROFILE).inc()
        exec_s.labels("success", PROFILE).observe(elapsed)
        steps_h.labels("success", PROFILE).observe(steps)
        util_h.labels(PROFILE).observe(spent / CEILING)
    return run, lambda: None


# --- measurement ----------------------------------------------------------------------------

# name -> builder(span_sink, metric_sink); the report lists variants in this order.
VARIANTS: dict[str, Callable[..., tuple[Callable[[int], None], Callable[[], None]]]] = {
    "none": lambda span_sink, metric_sink: variant_none(),
    "ours_full": functools.partial(variant_ours, tracing=True),
    "ours_metrics_only": functools.partial(variant_ours, tracing=False),
    "naive_otel": variant_naive_otel,
    "prometheus_client": lambda span_sink, metric_sink: variant_prometheus_client(),
}


def build(sink: str) -> dict[str, tuple[Callable[[int], None], Callable[[], None]]]:
    span_sink, metric_sink = sinks(sink)
    return {name: make(span_sink, metric_sink) for name, make in VARIANTS.items()}


def measure(rounds: int, executions: int, sink: str = "noop", seed: int = 1) -> dict:
    variants = build(sink)
    try:
        for run, _ in variants.values():  # warm-up: caches, label sets, code paths
            for i in range(min(200, executions)):
                run(i)
        samples: dict[str, list[float]] = {name: [] for name in variants}
        order = list(variants)
        rng = random.Random(seed)
        for _ in range(rounds):
            rng.shuffle(order)
            for name in order:
                run = variants[name][0]
                gc.collect()
                start = time.perf_counter_ns()
                for i in range(executions):
                    run(i)
                samples[name].append((time.perf_counter_ns() - start) / executions / 1000)
    finally:
        for _, stop in variants.values():
            stop()
    med = {name: statistics.median(values) for name, values in samples.items()}
    result = {f"{name}_us": round(med[name], 2) for name in VARIANTS}
    full, metrics_only = med["ours_full"], med["ours_metrics_only"]
    result.update({
        "naive_otel_over_ours_full": round(med["naive_otel"] / full, 2),
        "prometheus_client_over_ours_metrics_only": round(
            med["prometheus_client"] / metrics_only, 2),
        "target_full_met": full <= med["naive_otel"] / 3,
        "target_metrics_only_met": metrics_only <= med["prometheus_client"],
        "overhead_us": {name: round(med[name] - med["none"], 2) for name in VARIANTS
                        if name != "none"},
        "spread_us": {name: [round(min(v), 2), round(max(v), 2)] for name, v in samples.items()},
        "rounds": rounds, "executions_per_round": executions, "sink": sink,
        "python": platform.python_version(), "machine": platform.machine(),
    })
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--executions", type=int, default=2000, help="per round and variant")
    parser.add_argument("--sink", choices=("noop", "unreachable"), default="noop")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.executions < 1:
        parser.error("--rounds and --executions must be >= 1")
    result = measure(args.rounds, args.executions, args.sink)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'variant':<20}{'us/execution':>14}{'overhead us':>13}")
    for name in VARIANTS:
        over = result["overhead_us"].get(name, 0.0)
        print(f"{name:<20}{result[name + '_us']:>14.2f}{over:>13.2f}")
    print(f"naive_otel / ours_full = {result['naive_otel_over_ours_full']} (target >= 3): "
          f"{'met' if result['target_full_met'] else 'NOT met'}")
    print(f"prometheus_client / ours_metrics_only = "
          f"{result['prometheus_client_over_ours_metrics_only']} (target >= 1): "
          f"{'met' if result['target_metrics_only_met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
