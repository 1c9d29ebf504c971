"""The LLM-call API in-process: `chat {model}` CLIENT spans under their execution or tool call,
the GenAI metrics of both layouts, cost from the price table (genai-prices, or CUGAR_LLM_PRICES),
unpriced models counted and never guessed, and the content-capture modes."""

from __future__ import annotations

import json

import pytest
from genai_prices import Usage, calc_price
from opentelemetry.trace import SpanKind, StatusCode

from otel import ConfigError, catalogue
from otel.config import load_settings
from otel.privacy import is_secret_key
from otel.testing import in_memory_telemetry, last_points

CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
EMAIL = "jane.doe@acme.example.com"


def _run(env=None, body=None):
    tel, spans, metrics = in_memory_telemetry(env)
    with tel.agent.execution(profile="smb", agent_name="a") as ex:
        body(tel.agent, ex)
    tel.force_flush()
    tel.shutdown()
    return tel, spans.get_finished_spans(), last_points(metrics)


def _key(**attrs) -> frozenset:
    return frozenset(attrs.items())


CALL = dict(zip(("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model"),
                ("chat", "openai", "gpt-4o-mini")))


def test_chat_spans_are_clients_under_their_execution_or_tool_call():
    def body(agent, ex):
        with ex.llm_call("openai", "gpt-4o-mini") as call:
            call.record(input_tokens=1200, output_tokens=300, finish_reason="stop",
                        response_model="gpt-4o-mini-2024-07-18")
        with ex.tool_call("draft_email", domain="engagement"):
            with agent.llm_call("anthropic", "claude-sonnet-4-5") as call:  # the current tool
                call.error("429")

    _, spans, _ = _run(body=body)
    by_name = {s.name: s for s in spans}
    planner, drafted = by_name["chat gpt-4o-mini"], by_name["chat claude-sonnet-4-5"]
    assert planner.kind is drafted.kind is SpanKind.CLIENT
    assert planner.parent.span_id == by_name["invoke_agent a"].context.span_id
    assert drafted.parent.span_id == by_name["execute_tool draft_email"].context.span_id
    assert dict(planner.attributes) == {
        **CALL, "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "cugar.llm.cost": planner.attributes["cugar.llm.cost"]}
    assert drafted.attributes["error.type"] == "429" and drafted.status.status_code is StatusCode.ERROR
    assert "gen_ai.usage.input_tokens" not in drafted.attributes


def test_both_metric_layouts_and_streaming_time_to_first_chunk():
    def body(agent, ex):
        with ex.llm_call("openai", "gpt-4o-mini", stream=True) as call:
            call.first_chunk()
            call.record(input_tokens=100, output_tokens=20)
        with ex.llm_call("openai", "gpt-4o-mini") as call:
            call.error("timeout")

    _, spans, points = _run(body=body)
    assert "gen_ai.response.time_to_first_chunk" in spans[0].attributes
    assert spans[0].attributes["gen_ai.request.stream"] is True
    for spec in (catalogue.LLM_OPERATION_DURATION, catalogue.LLM_INFERENCE_DURATION):
        assert points[spec.name][_key(**CALL)].count == 1
        assert points[spec.name][_key(**CALL, **{"error.type": "timeout"})].count == 1
    for spec in (catalogue.LLM_TIME_TO_FIRST_CHUNK, catalogue.LLM_INFERENCE_TIME_TO_FIRST_CHUNK):
        assert points[spec.name][_key(**CALL)].count == 1  # the streaming call only
    usage = points[catalogue.LLM_TOKEN_USAGE.name]
    assert usage[_key(**CALL, **{"gen_ai.token.type": "input"})].sum == 100
    assert usage[_key(**CALL, **{"gen_ai.token.type": "output"})].sum == 20
    assert points[catalogue.LLM_INPUT_TOKENS.name] == {_key(**CALL, **{"gen_ai.token.modality": "text"}): 100}
    assert points[catalogue.LLM_OUTPUT_TOKENS.name] == {_key(**CALL, **{"gen_ai.token.modality": "text"}): 20}


def test_cost_is_genai_prices_and_an_unknown_model_is_unpriced_not_guessed():
    costs = {}

    def body(agent, ex):
        for model in ("gpt-4o-mini", "in-house-model"):
            with ex.llm_call("openai", model) as call:
                call.record(input_tokens=1500, output_tokens=400)
            costs[model] = call.cost

    _, spans, points = _run(body=body)
    expected = float(calc_price(Usage(input_tokens=1500, output_tokens=400),
                                model_ref="gpt-4o-mini", provider_id="openai").total_price)
    assert costs["gpt-4o-mini"] == pytest.approx(expected, abs=catalogue.LLM_COST_QUANTUM_USD)
    assert (costs["gpt-4o-mini"] / catalogue.LLM_COST_QUANTUM_USD).is_integer()  # exact sums
    assert costs["in-house-model"] is None
    assert points[catalogue.LLM_COST.name] == {_key(**{
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "profile": "smb"}): costs["gpt-4o-mini"]}
    assert points[catalogue.LLM_COST_UNPRICED.name] == {_key(**{
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "in-house-model"}): 1}
    assert "cugar.llm.cost" not in next(s for s in spans if s.name == "chat in-house-model").attributes


def test_a_configured_price_table_wins_and_prices_in_house_models(tmp_path):
    table = tmp_path / "prices.json"
    table.write_text(json.dumps({"openai": {
        "in-house-model": {"input_per_mtok": 1.0, "output_per_mtok": 4.0},
        "gpt-4o-mini": {"input_per_mtok": 0.0, "output_per_mtok": 0.0}}}))
    costs = {}

    def body(agent, ex):
        for model in ("in-house-model", "gpt-4o-mini"):
            with ex.llm_call("openai", model) as call:
                call.record(input_tokens=1_000_000, output_tokens=500_000)
            costs[model] = call.cost

    _run({"CUGAR_LLM_PRICES": str(table)}, body)
    assert costs == {"in-house-model": 3.0, "gpt-4o-mini": 0.0}


@pytest.mark.parametrize("content,fragment", [
    (None, "readable JSON price table"),
    ("{not json", "not JSON"),
    ('{"openai": {"m": {"input_per_mtok": -1, "output_per_mtok": 1}}}', "number >= 0"),
    ('["openai"]', "object of providers"),
])
def test_a_bad_price_table_is_a_config_error_naming_the_variable(tmp_path, content, fragment):
    path = tmp_path / "prices.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_settings({"CUGAR_LLM_PRICES": str(path)})
    assert "CUGAR_LLM_PRICES=" in str(err.value) and fragment in str(err.value)


@pytest.mark.parametrize("mode,on_span,in_event", [
    ("NO_CONTENT", False, False), ("false", False, False), ("true", True, False),
    ("SPAN_ONLY", True, False), ("EVENT_ONLY", False, True), ("span_and_event", True, True)])
def test_content_capture_modes_put_content_where_they_say(mode, on_span, in_event):
    def body(agent, ex):
        with ex.llm_call("openai", "gpt-4o-mini", messages=f"email {EMAIL} a quote") as call:
            call.record(input_tokens=10, output_tokens=5, output="Sent.")

    _, spans, _ = _run({CAPTURE: mode}, body)
    chat = next(s for s in spans if s.name.startswith("chat "))
    assert ("gen_ai.input.messages" in chat.attributes) is on_span
    assert ("gen_ai.output.messages" in chat.attributes) is on_span
    events = [e for e in chat.events if e.name == "gen_ai.client.inference.operation.details"]
    assert bool(events) is in_event
    exported = json.dumps({**chat.attributes, **{k: v for e in events for k, v in e.attributes.items()}})
    assert EMAIL not in exported  # captured content is redacted
    if on_span:
        assert json.loads(chat.attributes["gen_ai.input.messages"])[0]["role"] == "user"


def test_bad_token_counts_are_absent_and_counted_and_token_type_is_no_secret():
    def body(agent, ex):
        with ex.llm_call("openai", "gpt-4o-mini") as call:
            call.record(input_tokens=-5, output_tokens="many")

    tel, spans, points = _run(body=body)
    assert tel.stats()["invalid_input"] == 2
    assert "gen_ai.usage.input_tokens" not in spans[0].attributes
    assert catalogue.LLM_COST.name not in points and catalogue.LLM_COST_UNPRICED.name not in points
    assert not is_secret_key(catalogue.GEN_AI_TOKEN_TYPE) and is_secret_key("session.token")


def test_disabled_telemetry_llm_calls_are_no_ops():
    tel, spans, metrics = in_memory_telemetry({"OTEL_SDK_DISABLED": "true"})
    with tel.agent.execution(profile="smb") as ex:
        with ex.llm_call("openai", "gpt-4o-mini", stream=True) as call:
            call.first_chunk()
            call.record(input_tokens=1, output_tokens=1)
    with pytest.raises(KeyError):  # the agent's own exception passes through
        with tel.agent.llm_call("openai", "gpt-4o-mini"):
            raise KeyError("x")
    assert call.cost is None and not spans.get_finished_spans()
