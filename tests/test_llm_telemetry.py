"""LLM calls end to end: the simulated agent's planner and LLM-backed tools call (in-process)
models; their telemetry goes through our collector into Prometheus and Jaeger. Prometheus' token
and cost totals per model equal the agent's ground truth exactly, in both GenAI metric layouts,
and every call is a `chat {model}` CLIENT span under the execution or tool call that made it.

Not covered here: the price table itself (tests/test_otel_llm.py checks it against genai-prices)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest

from otel import catalogue as c
from services.agent.llm import STREAMING_TOOLS, TOOL_MIX
from services.monitoring import queries as q
from services.stack.pipeline import Pipeline
from services.stack.process import wait_until
from tests.support.jaeger import hex_id

pytestmark = pytest.mark.integration

SERVICE = "cugar-llm"
SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2
JOB = q.eq("job", SERVICE)
MODEL, PROVIDER = c.label_name(c.GEN_AI_MODEL), c.label_name(c.GEN_AI_PROVIDER)


@pytest.fixture(scope="module")
def run(pipeline: Pipeline, run_agent: Callable[..., dict]) -> tuple[dict, list[dict]]:
    truth = run_agent(pipeline, "--executions", "50", "--processes", "2", "--seed", "10",
                      "--time-scale", "0", env={"OTEL_SERVICE_NAME": SERVICE})
    llm = truth["llm"]
    assert llm["errors"] and llm["unpriced_calls"] and llm["cost_usd"] > 0, "pick another seed"

    def all_spans() -> bool:
        spans = pipeline.spans(SERVICE)
        return sum(s["name"].startswith("chat ") for s in spans) >= llm["calls"]

    wait_until(all_spans, 30, interval=0.5, what="every chat span in Jaeger")
    return truth, pipeline.spans(SERVICE)


def _per_model(truth: dict, field: str) -> dict[tuple[str, str], float]:
    return {(provider, model): m[field] for provider, models in truth["llm"]["by_model"].items()
            for model, m in models.items() if m["calls"]}


def _by_model(pipeline: Pipeline, expr: str, expected: dict) -> dict:
    """`sum by (provider, model) (expr)` once it equals `expected` (or the last result)."""
    promql = f"sum by ({PROVIDER}, {MODEL}) ({expr})"

    def read(result) -> dict:
        return {(r["metric"][PROVIDER], r["metric"][MODEL]): float(r["value"][1]) for r in result}

    try:
        return read(pipeline.wait_for(promql, lambda r: read(r) == expected, timeout=30))
    except TimeoutError:
        return read(pipeline.query(promql))


@pytest.mark.parametrize("spec,field", [
    (c.LLM_INPUT_TOKENS, "input_tokens"), (c.LLM_OUTPUT_TOKENS, "output_tokens")])
def test_token_counters_equal_the_ground_truth_per_model(pipeline, run, spec, field) -> None:
    truth, _ = run
    expected = {k: float(v) for k, v in _per_model(truth, field).items() if v}
    # every token is text: the modality label reaches Prometheus as itself (not masked as a
    # secret-looking key, not folded into "other" by the cardinality guard)
    text = q.eq(c.label_name(c.GEN_AI_TOKEN_MODALITY), "text")
    assert _by_model(pipeline, q.select(spec, matchers=[JOB, text]), expected) == expected


@pytest.mark.parametrize("spec, suffix", [(c.LLM_TOKEN_USAGE, "_sum"), (c.LLM_TOKENS, "")])
def test_token_usage_histogram_and_tokens_by_profile_equal_the_ground_truth(pipeline, run, spec,
                                                                            suffix) -> None:
    truth, _ = run
    for token_type in c.TOKEN_TYPES:
        expected = {k: float(v) for k, v in _per_model(truth, f"{token_type}_tokens").items() if v}
        got = _by_model(pipeline, q.select(spec, suffix, [
            JOB, q.eq(c.label_name(c.GEN_AI_TOKEN_TYPE), token_type)]), expected)
        assert got == expected, token_type
    if spec is c.LLM_TOKENS:  # every profile's executions called models
        profiles = pipeline.query(f"count by (profile) ({q.select(spec, matchers=[JOB])})")
        assert {r["metric"]["profile"] for r in profiles} == set(c.DEFAULT_PROFILES)


def test_cost_equals_the_ground_truth_per_model_and_unpriced_calls_are_counted(pipeline, run):
    truth, _ = run
    priced = {k: v for k, v in _per_model(truth, "cost_usd").items() if v}
    assert _by_model(pipeline, q.select(c.LLM_COST, matchers=[JOB]), priced) == priced
    unpriced = {k: float(v) for k, v in _per_model(truth, "unpriced_calls").items() if v}
    assert _by_model(pipeline, q.select(c.LLM_COST_UNPRICED, matchers=[JOB]), unpriced) == unpriced


@pytest.mark.parametrize("spec", [c.LLM_OPERATION_DURATION, c.LLM_INFERENCE_DURATION])
def test_calls_and_errors_per_model_in_both_duration_layouts(pipeline, run, spec) -> None:
    truth, _ = run
    calls = {k: float(v) for k, v in _per_model(truth, "calls").items()}
    assert _by_model(pipeline, q.select(spec, "_count", [JOB]), calls) == calls
    errors = {k: float(v) for k, v in _per_model(truth, "errors").items() if v}
    failed = q.select(spec, "_count", [JOB, 'error_type!=""'])
    assert _by_model(pipeline, failed, errors) == errors


def test_chat_spans_sit_under_their_execution_or_tool_with_genai_attributes(run) -> None:
    truth, spans = run
    by_id = {s["spanId"]: s for s in spans}
    chats = [s for s in spans if s["attrs"].get("gen_ai.operation.name") == "chat"]
    assert len(chats) == truth["llm"]["calls"]
    parents = Counter()
    for span in chats:
        attrs = span["attrs"]
        model = attrs["gen_ai.request.model"]
        assert span["name"] == f"chat {model}" and span["kind"] == SPAN_KIND_CLIENT
        assert attrs["gen_ai.provider.name"] in truth["llm"]["by_model"]
        parent = by_id[span["parentSpanId"]]
        operation = parent["attrs"]["gen_ai.operation.name"]
        parents[operation] += 1
        assert parent["traceId"] == span["traceId"]
        if operation == "execute_tool":
            tool = parent["attrs"]["gen_ai.tool.name"]
            assert model in TOOL_MIX[tool]
            assert ("gen_ai.response.time_to_first_chunk" in attrs) == (tool in STREAMING_TOOLS)
        else:
            assert operation == "invoke_agent"
        if "error.type" in attrs:
            assert span["status"].get("code") == STATUS_ERROR
            assert "gen_ai.usage.input_tokens" not in attrs
        else:
            assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
            assert attrs["gen_ai.response.finish_reasons"][0] in ("stop", "length")
            assert attrs["gen_ai.response.model"] == model
    assert parents["invoke_agent"] >= truth["executions"] and parents["execute_tool"] > 0
    assert sum("error.type" in s["attrs"] for s in chats) == truth["llm"]["errors"]
    tokens = sum(s["attrs"].get("gen_ai.usage.input_tokens", 0) for s in chats)
    assert tokens == truth["llm"]["input_tokens"]


def test_llm_call_durations_carry_exemplars_naming_their_chat_spans(pipeline, run) -> None:
    """From an LLM latency number to its call: each exemplar Prometheus stored on the duration
    buckets names a `chat {model}` span Jaeger holds, of the model of its series."""
    _, spans = run
    chats = {hex_id(s["spanId"]): s for s in spans if s["name"].startswith("chat ")}
    buckets = f'{c.LLM_OPERATION_DURATION.series("_bucket")}{{job="{SERVICE}"}}'
    found: list[tuple[dict, dict]] = []

    def stored() -> bool:
        now = time.time()
        found[:] = [(series["seriesLabels"], ex) for series in
                    pipeline.prometheus.exemplars(buckets, now - 600, now + 60)
                    for ex in series["exemplars"]]
        return bool(found)

    wait_until(stored, 30, interval=0.5, what="exemplars of the LLM call durations")
    for labels, ex in found:
        chat = chats[ex["labels"]["span_id"]]
        assert hex_id(chat["traceId"]) == ex["labels"]["trace_id"]
        assert chat["attrs"]["gen_ai.request.model"] == labels[MODEL]


def test_the_cardinality_guard_folds_no_llm_label(pipeline, run) -> None:
    """Every LLM label value is in the catalogue's sets: the guard replaced none with `other`
    (a label masked by the redaction as a secret-looking key would have been)."""
    overflow = pipeline.query(f'sum({q.CARDINALITY_OVERFLOW}{{service="{SERVICE}"}})')
    assert not overflow or float(overflow[0]["value"][1]) == 0, overflow
    assert not pipeline.query(q.select(c.LLM_INPUT_TOKENS, matchers=[JOB, 'gen_ai_request_model="other"']))


BUDGET_SERVICE = "cugar-llm-budget"
BUDGET_USD = {"enterprise": 0.02, "demo": 0.02}  # USD per execution: some cross, some do not
BUDGET_SEED, BUDGET_EXECUTIONS = 11, 60


@pytest.fixture(scope="module")
def budget_run(pipeline: Pipeline, run_agent: Callable[..., dict]) -> dict:
    args = [a for p, usd in BUDGET_USD.items() for a in ("--budget-usd", f"{p}={usd}")]
    return run_agent(pipeline, "--executions", str(BUDGET_EXECUTIONS), "--processes", "2",
                     "--seed", str(BUDGET_SEED), "--time-scale", "0", *args,
                     env={"OTEL_SERVICE_NAME": BUDGET_SERVICE})


@pytest.mark.parametrize("spec, field", [(c.BUDGET_WARNINGS, "budget_warnings"),
                                         (c.BUDGET_EXCEEDED, "budget_exceeded")])
def test_a_budget_in_usd_is_spent_by_llm_calls_and_counted_per_profile(pipeline, budget_run,
                                                                       spec, field) -> None:
    """The executions whose LLM calls cost more than 80% (100%) of their USD ceiling count in
    the same counters as cost units, once each, by profile."""
    from services.agent.scenario import SimulationConfig, script_for

    truth = {p: float(v[field]) for p, v in budget_run["by_profile"].items() if v[field]}
    # Not what cost units alone give: the USD budgets add crossings.
    units_only = Counter()
    for i in range(BUDGET_EXECUTIONS):
        script = script_for(i, SimulationConfig(seed=BUDGET_SEED))
        units_only[script.profile.name] += getattr(script, field.removesuffix("s"))
    assert any(truth.get(p, 0) > units_only[p] for p in BUDGET_USD), (truth, units_only)
    promql = f'sum by (profile) ({q.select(spec, matchers=[q.eq("job", BUDGET_SERVICE)])})'

    def read(result) -> dict:
        return {r["metric"]["profile"]: float(r["value"][1]) for r in result}

    try:
        got = read(pipeline.wait_for(promql, lambda r: read(r) == truth, timeout=30))
    except TimeoutError:
        got = read(pipeline.query(promql))
    assert got == truth
