"""An execution's budget in US dollars, in-process: its LLM calls spend their computed cost
by themselves (through a tool call too), the budget_warning / budget_exceeded events and
counters fire at 80% and above 100% as for cost units, each execution counts once whichever
budget crosses first, utilization is the larger share, and bad ceilings and amounts are
refused and counted. A configured price table makes every cost exact.

Through the real pipeline: tests/test_llm_telemetry.py (the simulated agent's --budget-usd)."""

from __future__ import annotations

import json

import pytest

from otel import catalogue
from otel.testing import in_memory_telemetry, last_points, total

# 1 USD per input token, nothing for output: a call of N input tokens costs N USD (whole
# numbers: sums and the 80% threshold are exact).
PRICES = {"openai": {"gpt-4o-mini": {"input_per_mtok": 1e6, "output_per_mtok": 0.0}}}


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(PRICES))
    return {"CUGAR_LLM_PRICES": str(path)}


def run(env, body, **execution):
    tel, spans, metrics = in_memory_telemetry(env)
    with tel.agent.execution(profile="smb", agent_name="a", **execution) as ex:
        body(tel.agent, ex)
    tel.force_flush()
    stats = tel.stats()
    tel.shutdown()
    finished = spans.get_finished_spans()
    root = next(s for s in finished if s.name == "invoke_agent a")
    return ex, root, last_points(metrics), stats


def call(scope, input_tokens: int) -> None:
    with scope.llm_call("openai", "gpt-4o-mini") as c:
        c.record(input_tokens=input_tokens, output_tokens=10)


def counted(points, spec) -> float:
    return total(points.get(spec.name, {}), profile="smb")


def test_llm_calls_spend_the_usd_budget_warning_at_80_percent_and_exceeded_above(env):
    def body(agent, ex):
        call(ex, 500)                                  # 500 USD: 50%
        with ex.tool_call("draft_email", domain="engagement"):
            call(agent, 300)                           # through the tool: 80% -> warning
        call(ex, 100)                                  # 90%
        call(ex, 200)                                  # 110% -> exceeded

    ex, root, points, _ = run(env, body, budget_ceiling_usd=1000)
    assert ex.spent_usd == 1100
    events = [(e.name, dict(e.attributes)) for e in root.events if e.name.startswith("budget_")]
    assert [name for name, _ in events] == ["budget_warning", "budget_exceeded"]
    for _, attrs in events:
        assert attrs["cugar.budget.unit"] == "USD" and attrs["cugar.budget.ceiling"] == 1000
    assert events[0][1]["cugar.budget.used"] == 800
    assert counted(points, catalogue.BUDGET_WARNINGS) == counted(points, catalogue.BUDGET_EXCEEDED) == 1
    assert root.attributes["cugar.budget.ceiling_usd"] == 1000
    assert root.attributes["cugar.budget.used_usd"] == 1100
    assert root.attributes["cugar.budget.utilization"] == pytest.approx(1.1)
    utilization = points[catalogue.BUDGET_UTILIZATION.name]
    assert [p.sum for p in utilization.values()] == [pytest.approx(1.1)]
    # USD spend is not cost units
    assert counted(points, catalogue.BUDGET_USED) == 0 and ex.spent == 0


def test_under_the_usd_ceiling_nothing_fires_and_failed_or_unpriced_calls_spend_nothing(env):
    def body(agent, ex):
        call(ex, 700)                                  # 70%
        with ex.llm_call("openai", "gpt-4o-mini") as c:
            c.error("429")                             # no usage: no cost
        with ex.llm_call("openai", "cugar-sales-ft-1") as c:  # no price: never guessed
            c.record(input_tokens=10_000, output_tokens=1)

    ex, root, points, _ = run(env, body, budget_ceiling_usd=1000)
    assert ex.spent_usd == 700
    assert not [e for e in root.events if e.name.startswith("budget_")]
    assert counted(points, catalogue.BUDGET_WARNINGS) == 0
    assert root.attributes["cugar.budget.utilization"] == pytest.approx(0.7)


def test_each_execution_counts_once_whichever_budget_crosses_first(env):
    def body(agent, ex):
        ex.spend(9)                                    # cost units: 90% -> warning (units)
        call(ex, 850)                                  # USD: 85%, warned already
        call(ex, 200)                                  # USD: 105% -> exceeded (USD)
        ex.spend(2)                                    # units: 110%, exceeded already

    ex, root, points, _ = run(env, body, budget_ceiling=10, budget_ceiling_usd=1000)
    events = [(e.name, e.attributes["cugar.budget.unit"]) for e in root.events
              if e.name.startswith("budget_")]
    assert events == [("budget_warning", "cost_unit"), ("budget_exceeded", "USD")]
    assert counted(points, catalogue.BUDGET_WARNINGS) == counted(points, catalogue.BUDGET_EXCEEDED) == 1
    assert counted(points, catalogue.BUDGET_USED) == 11
    # the larger share: 11/10 cost units against 1050/1000 USD
    assert root.attributes["cugar.budget.utilization"] == pytest.approx(1.1)


def test_spend_usd_adds_spend_the_library_does_not_see(env):
    ex, root, points, _ = run(env, lambda agent, ex: ex.spend_usd(0.875), budget_ceiling_usd=1)
    assert ex.spent_usd == 0.875
    assert [e.name for e in root.events if e.name.startswith("budget_")] == ["budget_warning"]


def test_cost_units_keep_working_without_a_usd_ceiling(env):
    def body(agent, ex):
        call(ex, 5000)                                 # 5000 USD, no USD ceiling: no event
        ex.spend(8)

    ex, root, points, _ = run(env, body, budget_ceiling=10)
    assert [(e.name, e.attributes["cugar.budget.unit"]) for e in root.events
            if e.name.startswith("budget_")] == [("budget_warning", "cost_unit")]
    assert root.attributes["cugar.budget.used_usd"] == 5000
    assert "cugar.budget.ceiling_usd" not in root.attributes
    assert root.attributes["cugar.budget.utilization"] == pytest.approx(0.8)


@pytest.mark.parametrize("ceiling", [0, -1, "10", float("nan")])
def test_a_bad_usd_ceiling_is_ignored_and_counted(env, ceiling):
    ex, root, points, stats = run(env, lambda agent, ex: call(ex, 5000),
                                  budget_ceiling_usd=ceiling)
    assert stats["invalid_input"] == 1
    assert "cugar.budget.ceiling_usd" not in root.attributes
    assert counted(points, catalogue.BUDGET_EXCEEDED) == 0


@pytest.mark.parametrize("amount", [-0.1, float("inf"), "1", True])
def test_a_bad_usd_amount_is_ignored_and_counted(env, amount):
    ex, _, _, stats = run(env, lambda agent, ex: ex.spend_usd(amount), budget_ceiling_usd=1)
    assert ex.spent_usd == 0 and stats["invalid_input"] == 1


def test_the_execution_function_decorator_takes_a_usd_ceiling(env):
    tel, spans, _ = in_memory_telemetry(env)

    @tel.agent.execution_function(profile="smb", budget_ceiling_usd=100)
    def handle():
        call(tel.agent, 200)

    handle()
    tel.force_flush()
    tel.shutdown()
    root = next(s for s in spans.get_finished_spans() if s.name == "invoke_agent handle")
    assert [e.name for e in root.events] == ["budget_warning", "budget_exceeded"]
