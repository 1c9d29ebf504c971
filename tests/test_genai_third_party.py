"""GenAI agents from any framework, no CUGAr library: real third-party emitters installed from
PyPI, driven against a local fake OpenAI-compatible server (tests/support/fake_openai.py),
exporting OTLP to our real collector (Pipeline: collector, Prometheus, Jaeger).

- PydanticAI with its native instrumentation (content captured by default), chat completions
  (one run streamed);
- the OpenAI Agents SDK with the official opentelemetry-instrumentation-genai-openai-agents
  and opentelemetry-instrumentation-genai-openai (Responses API), content capture on;
- a plain OpenTelemetry SDK sender in the older span layout (gen_ai.system, `chat {model}`
  spans without gen_ai.operation.name);
- a plain sender using our library's instrumentation scope, whose spans must not be derived
  (our SDK counts them with its own instruments).

The collector's signal_to_metrics/genai connector derives the cugar.genai.* metrics; Prometheus
must hold exactly what was driven (agent runs and failures, tool calls and errors, LLM calls,
failures and tokens by model, from the fake server's ledger), Jaeger the spans, and none of the
PII canaries put into prompts (hence tool arguments and results) may reach either.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel import catalogue
from services.monitoring import collector_genai
from services.stack.pipeline import Pipeline
from services.stack.prometheus_api import get_json
from services.stack.process import wait_until
from tests.conftest import REPO_ROOT, require_pipeline_components
from tests.support import genai_emitters, require_module
from tests.support.canaries import CANARIES, leaks, text_with
from tests.support.fake_openai import FakeOpenAI

pytestmark = pytest.mark.integration

PYDANTIC, AGENTS, LEGACY, OURS, MANY = ("genai-pydantic-ai", "genai-openai-agents",
                                        "genai-legacy-layout", "genai-cugar-scope", "genai-many-tools")
MANY_TOOLS = catalogue.GENAI_OPEN_SET_LIMITS[catalogue.GENAI_TOOL_NAME] + 44
CANARY_TOOL = "lookup_canary.person@example.com"
RUNS = {PYDANTIC: {"runs": 3, "failing_tool_runs": 1, "failing_model_runs": 1},
        AGENTS: {"runs": 2, "failing_tool_runs": 0, "failing_model_runs": 1}}
CANARY_TEXT = text_with(tuple(c for c in CANARIES if "\n" not in c.value))
LEGACY_MODEL = "legacy-model-1"
DEADLINE_S = 60


def run_emitter(pipeline: Pipeline, emitter: str, service: str, base_url: str) -> dict:
    cmd = genai_emitters.command(emitter, base_url, **RUNS[service], text=CANARY_TEXT)
    env = genai_emitters.environment(pipeline.agent_env(), emitter, service)
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, f"{emitter} exited {proc.returncode}: {proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def send_plain_spans(pipeline: Pipeline) -> None:
    """The older layout (no gen_ai.operation.name, `chat {model}`, gen_ai.system) from one
    sender, and invoke_agent / execute_tool / chat spans under our library's scope from another."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    for service, scope in ((LEGACY, "legacy-genai-app"), (OURS, catalogue.INSTRUMENTATION_SCOPE),
                           (MANY, "many-tools-app")):
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=pipeline.otlp_grpc_endpoint, insecure=True)))
        tracer = provider.get_tracer(scope)
        if service == LEGACY:
            for tokens, failed in ((5, False), (8, True)):
                with tracer.start_as_current_span(f"chat {LEGACY_MODEL}", kind=SpanKind.CLIENT) as span:
                    span.set_attributes({"gen_ai.system": "openai", "gen_ai.request.model": LEGACY_MODEL,
                                         "gen_ai.usage.input_tokens": tokens,
                                         "gen_ai.usage.output_tokens": 2,
                                         "gen_ai.prompt": CANARY_TEXT})
                    if failed:
                        span.set_status(Status(StatusCode.ERROR, "rate limited"))
            with tracer.start_as_current_span("execute_tool") as span:  # a name with a canary
                span.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": CANARY_TOOL})
        elif service == MANY:
            # Every span its own export request (SimpleSpanProcessor): one delta per batch.
            for i in range(MANY_TOOLS):
                with tracer.start_as_current_span(f"execute_tool t{i}") as span:
                    span.set_attributes({"gen_ai.operation.name": "execute_tool",
                                         "gen_ai.tool.name": f"generated_tool_{i}"})
        else:
            with tracer.start_as_current_span("invoke_agent ours") as span:
                span.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "ours"})
                with tracer.start_as_current_span("execute_tool t") as tool:
                    tool.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "t"})
                with tracer.start_as_current_span("chat m", kind=SpanKind.CLIENT) as chat:
                    chat.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
                                         "gen_ai.provider.name": "openai",
                                         "gen_ai.usage.input_tokens": 1, "gen_ai.usage.output_tokens": 1})
        provider.shutdown()


@pytest.fixture(scope="module")
def driven(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, dict]]:
    """The pipeline and, per service, the fake server's ledger and what the emitter reported."""
    for module in ("pydantic_ai", "agents", "opentelemetry.instrumentation.genai.openai_agents"):
        require_module(module)
    require_pipeline_components()
    with Pipeline(tmp_path_factory.mktemp("genai"), alertmanager=False) as pipeline:
        truth = {}
        with FakeOpenAI() as llm:
            report = run_emitter(pipeline, "pydantic-ai", PYDANTIC, llm.base_url)
            truth[PYDANTIC] = (list(llm.calls), report)
        with FakeOpenAI() as llm:
            report = run_emitter(pipeline, "openai-agents", AGENTS, llm.base_url)
            truth[AGENTS] = (list(llm.calls), report)
        send_plain_spans(pipeline)
        yield pipeline, truth


def _by(pipeline: Pipeline, metric: str, service: str, label: str) -> dict[str, float]:
    result = pipeline.query(f'sum by ({label}) ({metric}{{job="{service}"}})')
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


def expected(service: str, calls: list, report: dict) -> dict[tuple[str, str], dict[str, float]]:
    """(prometheus series, label) -> {label value: count} the driven runs must produce."""
    runs = RUNS[service]
    agent = genai_emitters.AGENT_NAME
    model_calls = Counter(c.model for c in calls)
    errors = Counter(c.model for c in calls if c.error)
    tokens_in, tokens_out = Counter(), Counter()
    for c in calls:
        if not c.error:
            tokens_in[c.model] += c.input_tokens
            tokens_out[c.model] += c.output_tokens
    tool_calls = sum(c.tool_call is not None for c in calls)
    invocations = runs["runs"] + runs["failing_tool_runs"] + runs["failing_model_runs"]
    assert report["runs"] == runs["runs"] and report["failed_runs"] == invocations - runs["runs"]
    s = {d.spec.name: d.spec for d in catalogue.GENAI_DERIVED}
    return {
        (s["cugar.genai.agent.invocations"].series(), "gen_ai_agent_name"): {agent: invocations},
        (s["cugar.genai.agent.duration"].series("_count"), "gen_ai_agent_name"): {agent: invocations},
        (s["cugar.genai.agent.errors"].series(), "gen_ai_agent_name"): {agent: invocations - runs["runs"]},
        (s["cugar.genai.tool.calls"].series(), "gen_ai_tool_name"): {genai_emitters.TOOL_NAME: tool_calls},
        (s["cugar.genai.tool.duration"].series("_count"), "gen_ai_tool_name"):
            {genai_emitters.TOOL_NAME: tool_calls},
        (s["cugar.genai.tool.errors"].series(), "gen_ai_tool_name"):
            ({genai_emitters.TOOL_NAME: runs["failing_tool_runs"]} if runs["failing_tool_runs"] else {}),
        (s["cugar.genai.inference.calls"].series(), "gen_ai_request_model"): dict(model_calls),
        (s["cugar.genai.inference.duration"].series("_count"), "gen_ai_request_model"): dict(model_calls),
        (s["cugar.genai.inference.errors"].series(), "gen_ai_request_model"): dict(errors),
        (s["cugar.genai.inference.input_tokens"].series(), "gen_ai_request_model"): dict(tokens_in),
        (s["cugar.genai.inference.output_tokens"].series(), "gen_ai_request_model"): dict(tokens_out),
    }


@pytest.mark.parametrize("service", [PYDANTIC, AGENTS])
def test_prometheus_counts_equal_what_the_agents_did(driven, service: str) -> None:
    pipeline, truth = driven
    calls, report = truth[service]
    want = expected(service, calls, report)
    assert sum(c.tool_call is not None for c in calls) >= RUNS[service]["runs"]  # tools did run
    if service == PYDANTIC:
        assert sum(c.stream for c in calls) == 2  # the streamed run: tool call, then the answer

    def observed() -> dict:
        return {(metric, label): _by(pipeline, metric, service, label) for metric, label in want}

    try:
        wait_until(lambda: observed() == want, DEADLINE_S, interval=0.5,
                   what=f"{service}'s derived counts in Prometheus")
    except TimeoutError:
        assert observed() == want  # shows which series differ
    # Agent names on the LLM calls and tool calls where the framework puts them (PydanticAI).
    if service == PYDANTIC:
        by_agent = _by(pipeline, "cugar_genai_inference_calls_total", service, "gen_ai_agent_name")
        assert by_agent == {genai_emitters.AGENT_NAME: len(calls)}


def test_older_layout_is_accepted(driven) -> None:
    pipeline, _ = driven
    want = {"cugar_genai_inference_calls_total": {LEGACY_MODEL: 2},
            "cugar_genai_inference_errors_total": {LEGACY_MODEL: 1},
            "cugar_genai_inference_input_tokens_total": {LEGACY_MODEL: 13},
            "cugar_genai_inference_output_tokens_total": {LEGACY_MODEL: 4}}

    def observed() -> dict:
        return {m: _by(pipeline, m, LEGACY, "gen_ai_request_model") for m in want}

    try:
        wait_until(lambda: observed() == want, DEADLINE_S, interval=0.5, what="older-layout counts")
    except TimeoutError:
        assert observed() == want


def test_our_library_spans_are_not_derived(driven) -> None:
    """Our SDK counts its own executions, tool calls and LLM calls; the collector must not
    count them a second time from their spans (instrumentation scope cugar.otel)."""
    pipeline, _ = driven
    wait_until(lambda: len(pipeline.spans(OURS)) == 3, DEADLINE_S, interval=0.5,
               what="the cugar-scope spans in Jaeger")
    # The other senders' derived series are in (same batches, same path) before we look.
    wait_until(lambda: pipeline.query(f'cugar_genai_inference_calls_total{{job="{LEGACY}"}}'),
               DEADLINE_S, interval=0.5, what="the legacy sender's derived series")
    derived = pipeline.query(f'{{__name__=~"cugar_genai_.*", job="{OURS}"}}')
    assert derived == []


@pytest.mark.parametrize("service", [PYDANTIC, AGENTS])
def test_spans_are_in_jaeger(driven, service: str) -> None:
    pipeline, truth = driven
    calls, _ = truth[service]
    runs = RUNS[service]
    want = Counter({"invoke_agent": sum(runs.values()),
                    "execute_tool": sum(c.tool_call is not None for c in calls), "chat": len(calls)})

    def operations() -> Counter:
        return Counter(s["attrs"].get("gen_ai.operation.name") for s in pipeline.spans(service)
                       if s["attrs"].get("gen_ai.operation.name") in want)

    wait_until(lambda: operations() == want, DEADLINE_S, interval=0.5, what=f"{service}'s spans")


def test_captured_content_is_redacted(driven) -> None:
    pipeline, truth = driven
    for service in (PYDANTIC, AGENTS, LEGACY):
        wait_until(lambda: pipeline.spans(service), DEADLINE_S, interval=0.5, what=f"{service} spans")
    found = []
    for service in (PYDANTIC, AGENTS, LEGACY):
        spans = pipeline.spans(service)
        # Content was captured (tool arguments and results carry the prompt) and got through...
        tools = [s for s in spans if s["attrs"].get("gen_ai.operation.name") == "execute_tool"]
        if service != LEGACY:
            assert tools and all("gen_ai.tool.call.arguments" in s["attrs"] for s in tools)
            assert any("****" in str(s["attrs"]["gen_ai.tool.call.arguments"]) for s in tools)
        # ... but no canary did.
        found += leaks(json.dumps(spans, ensure_ascii=False), f"{service} spans in Jaeger")
    series = get_json(f"{pipeline.prometheus_url}/api/v1/series",
                      {"match[]": '{__name__=~"cugar_genai_.*"}'})["data"]
    assert series, "no derived series at all"
    found += leaks(json.dumps(series, ensure_ascii=False), "Prometheus series")
    assert found == []


def test_connector_block_is_generated_from_the_catalogue() -> None:
    config = REPO_ROOT / "otel-collector-config.yaml"
    text = config.read_text()
    assert collector_genai.render(text) == text, "stale: run `python -m services.monitoring`"
    assert "signal_to_metrics/genai" in text.split("\nservice:")[1]  # wired into a pipeline
    assert Path(REPO_ROOT / "collector" / "manifest.yaml").read_text().count("signaltometricsconnector v0.161.0") == 1


def test_street_pattern_reads_json_escaped_content() -> None:
    """Emitters record content as JSON (ASCII-only): 'ß' arrives as \\u00df, twice escaped
    inside a tool call's arguments within a JSON message list."""
    import re

    from otel.sensitive import VALUE_PATTERNS

    street = next(p.regex for p in VALUE_PATTERNS if p.kind == "street_address")
    once = json.dumps("Kanarienstra\xdfe 17")
    for text in ("Kanarienstra\xdfe 17", once, json.dumps([{"arguments": once}])):
        assert re.search(street, text), text


def test_labels_come_from_redacted_spans(driven) -> None:
    pipeline, _ = driven

    def tools() -> dict[str, float]:
        return _by(pipeline, "cugar_genai_tool_calls_total", LEGACY, "gen_ai_tool_name")

    wait_until(lambda: tools(), DEADLINE_S, interval=0.5, what="the legacy sender's tool call")
    (name, count), = tools().items()
    assert count == 1 and "****" in name and "canary.person" not in name, name


def test_derived_labels_are_bounded_and_totals_exact(driven) -> None:
    """More distinct tool names than the open set admits, one span per request: at most the
    bound plus `other`, and the sum still equals the spans sent (no `other` going backwards)."""
    pipeline, _ = driven
    limit = catalogue.GENAI_OPEN_SET_LIMITS[catalogue.GENAI_TOOL_NAME]

    def tools() -> dict[str, float]:
        return _by(pipeline, "cugar_genai_tool_calls_total", MANY, "gen_ai_tool_name")

    try:
        wait_until(lambda: sum(tools().values()) == MANY_TOOLS, DEADLINE_S, interval=0.5,
                   what="every generated tool call counted")
    except TimeoutError:
        assert sum(tools().values()) == MANY_TOOLS
    got = tools()
    assert len(got) == limit + 1 and got[catalogue.OTHER] == MANY_TOOLS - limit
    assert all(v == 1 for k, v in got.items() if k != catalogue.OTHER)
