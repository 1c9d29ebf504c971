"""The simulated agent's decisions and bookkeeping, without telemetry (pure and fast)."""

from __future__ import annotations

import pytest

from otel.catalogue import APPROVAL_DECISIONS, DEFAULT_PROFILES, DOMAINS, SIDE_EFFECTS
from services.agent.profiles import PROFILES
from services.agent.scenario import (FAIL_APPROVAL_TIMEOUT, FAIL_BUDGET_EXCEEDED,
                                     FAIL_TOOL_ERROR, FAILURE_REASONS, SimulationConfig,
                                     script_for)
from services.agent.summary import merge
from services.agent.tools import COST_QUANTUM, TOOLS, TRANSIENT_ERRORS
from services.agent.worker import Pacing, expected_summary

N = 2000


def summary_of(n: int = N, processes: int = 1, **config: object) -> dict:
    return expected_summary(SimulationConfig(**config),
                            Pacing(executions=n, processes=processes, time_scale=0))


def domain_error_rate(summary: dict, domain: str) -> float:
    d = summary["by_domain"][domain]
    return d["errors"] / d["calls"]


def test_registry_covers_every_domain_and_side_effect() -> None:
    assert 18 <= len(TOOLS) <= 24
    assert len({t.name for t in TOOLS}) == len(TOOLS)
    assert {t.domain for t in TOOLS} == set(DOMAINS)
    assert {t.side_effect for t in TOOLS} == set(SIDE_EFFECTS)
    assert tuple(p.name for p in PROFILES) == DEFAULT_PROFILES
    for tool in TOOLS:
        assert (tool.cost / COST_QUANTUM).is_integer()


def test_latency_distribution_matches_median_and_p95() -> None:
    import random

    rng = random.Random(7)
    tool = next(t for t in TOOLS if t.name == "crm_lookup")
    samples = sorted(tool.sample_latency_ms(rng) for _ in range(20000))
    assert samples[10000] == pytest.approx(tool.median_ms, rel=0.05)
    assert samples[19000] == pytest.approx(tool.p95_ms, rel=0.08)
    assert samples[-1] <= 10 * tool.p95_ms


def test_same_seed_same_summary_and_different_seed_differs() -> None:
    first, again, other = summary_of(seed=11), summary_of(seed=11), summary_of(seed=12)
    assert first == again
    assert first != other
    assert first["executions"] == other["executions"] == N


def test_summary_is_independent_of_the_number_of_processes() -> None:
    one = summary_of(500, processes=1, seed=3)
    parts = [expected_summary(SimulationConfig(seed=3), Pacing(executions=500, processes=3,
                                                                time_scale=0), range(w, w + 1))
             for w in range(3)]
    assert [p["executions"] for p in parts] == [167, 167, 166]
    merged = merge(parts)
    assert merged["processes"] == 3
    merged["processes"] = 1
    assert merged == one


def test_summary_arithmetic_is_consistent() -> None:
    s = summary_of(seed=5)
    profiles = s["by_profile"].values()
    assert s["successful"] + s["failed"] == s["executions"] == N
    assert sum(p["executions"] for p in profiles) == N
    assert sum(p["successful"] for p in profiles) == s["successful"]
    assert sum(p["budget_used"] for p in profiles) == s["budget_used"]
    assert sum(p["steps"] for p in profiles) == s["steps"] == s["tool_calls"]
    assert sum(d["calls"] for d in s["by_domain"].values()) == s["tool_calls"]
    assert sum(d["errors"] for d in s["by_domain"].values()) == s["tool_errors"]
    assert sum(t["calls"] for t in s["by_tool"].values()) == s["tool_calls"]
    assert sum(s["error_types"].values()) == s["tool_errors"]
    assert sum(s["failure_reasons"].values()) == s["failed"]
    assert s["failure_reasons"][FAIL_APPROVAL_TIMEOUT] == s["approvals"]["timeout"]
    assert s["failure_reasons"][FAIL_BUDGET_EXCEEDED] == s["budget_exceeded"]
    assert s["budget_exceeded"] <= s["budget_warnings"]
    assert set(s["approvals"]) == set(APPROVAL_DECISIONS)
    assert set(s["failure_reasons"]) == set(FAILURE_REASONS)


def test_default_workload_is_healthy_but_exercises_every_path() -> None:
    s = summary_of(seed=1)
    assert 0.90 <= s["successful"] / N <= 0.99
    assert 0.005 <= s["tool_errors"] / s["tool_calls"] <= 0.05
    assert s["budget_warnings"] > s["budget_exceeded"] > 0
    assert all(s["approvals"][d] > 0 for d in APPROVAL_DECISIONS)
    assert all(s["failure_reasons"][r] > 0 for r in FAILURE_REASONS)
    assert all(p["executions"] > 0 for p in s["by_profile"].values())
    assert all(d["calls"] > 0 for d in s["by_domain"].values())
    assert all(t["calls"] > 0 for t in s["by_tool"].values())


def test_scripts_follow_the_agent_policy() -> None:
    config = SimulationConfig(seed=9)
    for index in range(N):
        script = script_for(index, config)
        order = [("read-only", "propose", "execute").index(s.tool.side_effect)
                 for s in script.steps]
        assert order == sorted(order) and order.count(2) <= 1
        assert len(script.steps) <= script.planned_steps
        assert script.profile.min_steps <= script.planned_steps <= script.profile.max_steps
        assert script.spent == sum(a.cost for s in script.steps for a in s.attempts)
        for i, step in enumerate(script.steps):
            last = i == len(script.steps) - 1
            assert (step.approval is not None) == step.tool.needs_approval
            if step.approval and step.approval.decision != "approved":
                assert step.attempts == ()
                assert step.approval.decision != "timeout" or (
                    last and script.failure == FAIL_APPROVAL_TIMEOUT)
            elif step.approval:
                assert step.approval.wait_ms < config.approval_timeout_ms
            for attempt in step.attempts[:-1]:  # only transient errors are retried
                assert attempt.error_type in TRANSIENT_ERRORS
            assert len(step.attempts) <= 2
        if script.failure == FAIL_TOOL_ERROR:
            assert script.steps[-1].attempts[-1].error_type is not None
        assert (script.failure == FAIL_BUDGET_EXCEEDED) == script.budget_exceeded


def test_failure_injection_raises_the_named_domain_error_rate() -> None:
    base = summary_of(seed=2)
    hurt = summary_of(seed=2, error_rates={"intelligence": 0.9})
    assert domain_error_rate(base, "intelligence") < 0.05
    assert domain_error_rate(hurt, "intelligence") == pytest.approx(0.9, abs=0.03)
    for domain in DOMAINS:
        if domain != "intelligence":
            assert domain_error_rate(hurt, domain) < 0.06
    assert hurt["failed"] > 3 * base["failed"]


def test_failure_injection_by_tool_name_overrides_the_domain() -> None:
    s = summary_of(seed=2, error_rates={"engagement": 0.0, "send_email": 1.0})
    tools = s["by_tool"]
    assert tools["send_email"]["errors"] == tools["send_email"]["calls"] > 0
    assert tools["draft_email"]["errors"] == tools["schedule_meeting"]["errors"] == 0


def test_latency_multiplier_scales_latencies_without_changing_decisions() -> None:
    base, slow = SimulationConfig(seed=4), SimulationConfig(seed=4, latency_multiplier=3.0)
    for index in range(50):
        a, b = script_for(index, base), script_for(index, slow)
        assert a.failure == b.failure and a.spent == b.spent
        for sa, sb in zip(a.steps, b.steps, strict=True):
            for x, y in zip(sa.attempts, sb.attempts, strict=True):
                assert y.latency_ms == pytest.approx(3.0 * x.latency_ms)


@pytest.mark.parametrize("kwargs, message", [
    ({"error_rates": {"marketing": 0.5}}, "unknown failure target 'marketing'"),
    ({"error_rates": {"intelligence": 1.5}}, "within 0..1"),
    ({"profiles": ("vip",)}, "unknown profile 'vip'"),
    ({"latency_multiplier": 0.0}, "latency multiplier must be > 0"),
    ({"approval_timeout_rate": 0.6, "approval_reject_rate": 0.6}, "must not exceed 1"),
])
def test_bad_configuration_is_rejected_clearly(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulationConfig(**kwargs)


def test_profile_restriction() -> None:
    s = summary_of(300, seed=1, profiles=("demo", "enterprise"))
    assert {p for p, v in s["by_profile"].items() if v["executions"]} == {"demo", "enterprise"}


@pytest.mark.parametrize("kwargs, total", [
    ({"executions": 7}, 7), ({"rate": 2.0, "duration": 10.0}, 20),
    ({"rate": 3.0, "duration": 0.5}, 2), ({"rate": 0.1, "duration": 5.0}, 1),
])
def test_pacing_totals_and_partition(kwargs: dict, total: int) -> None:
    pacing = Pacing(processes=3, time_scale=0, **kwargs)
    assert pacing.total_executions() == total
    owned = sorted(i for w in range(3) for i in pacing.indices(w))
    assert owned == list(range(total))


def test_docs_tables_match_the_registry_and_profiles() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "agent.md").read_text()
    for t in TOOLS:
        row = (f"| `{t.name}` | {t.domain} | {t.side_effect} | {t.median_ms:g} / {t.p95_ms:g} | "
               f"{t.error_rate:.1%} | {', '.join(t.error_types)} | {t.cost:g} |")
        assert row in doc
    for p in PROFILES:
        mix = " / ".join(f"{w:g}" for w in p.domain_weights.values())
        row = (f"| {p.name} | {p.weight:.0%} | {p.budget_ceiling:g} | {p.min_steps}-{p.max_steps}"
               f" | {p.action_rate:.0%} | {mix} |")
        assert row in doc
