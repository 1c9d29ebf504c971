"""Ground-truth bookkeeping: what the simulated agent did, counted without telemetry.

The summary's shape is contract B (docs/agent.md). Counts are ints and budget amounts are
multiples of 0.25, so sums are exact and merging worker summaries is order-independent.
"""

from __future__ import annotations

from typing import Any

from otel import pricing
from otel.catalogue import APPROVAL_DECISIONS, BUDGET_WARNING_RATIO, DOMAINS
from otel.config import load_settings

from services.agent.llm import MODELS
from services.agent.profiles import PROFILES_BY_NAME
from services.agent.scenario import FAILURE_REASONS, ExecutionScript
from services.agent.tools import TOOLS_BY_NAME

_PROFILE_FIELDS = ("executions", "successful", "failed", "budget_used", "budget_warnings",
                   "budget_exceeded", "steps")
_CALL_FIELDS = ("calls", "errors")
_LLM_FIELDS = ("calls", "errors", "input_tokens", "output_tokens", "cost_usd", "unpriced_calls")
_prices: pricing.PriceTable | None = None


def _price_table() -> pricing.PriceTable:
    """The table the agent's telemetry prices calls with (CUGAR_LLM_PRICES, else genai-prices)."""
    global _prices
    if _prices is None:
        _prices = pricing.PriceTable(load_settings().llm_prices)
    return _prices


def _empty_llm() -> dict[str, Any]:
    by_model: dict[str, dict[str, Any]] = {}
    for m in MODELS.values():
        by_model.setdefault(m.provider, {})[m.name] = _zero_llm()
    return {**_zero_llm(), "by_model": by_model}


def _zero_llm() -> dict[str, Any]:
    return {f: 0.0 if f == "cost_usd" else 0 for f in _LLM_FIELDS}


def empty_summary(processes: int = 1, seed: int | None = None) -> dict[str, Any]:
    return {
        "executions": 0, "successful": 0, "failed": 0,
        "by_profile": {p: dict.fromkeys(_PROFILE_FIELDS, 0) for p in PROFILES_BY_NAME},
        "tool_calls": 0, "tool_errors": 0,
        "by_domain": {d: dict.fromkeys(_CALL_FIELDS, 0) for d in DOMAINS},
        "by_tool": {t: dict.fromkeys(_CALL_FIELDS, 0) for t in TOOLS_BY_NAME},
        "error_types": {},
        "budget_used": 0.0, "budget_exceeded": 0, "budget_warnings": 0,
        "approvals": dict.fromkeys(APPROVAL_DECISIONS, 0),
        "failure_reasons": dict.fromkeys(FAILURE_REASONS, 0),
        "steps": 0,
        # LLM calls: totals and per provider -> model (cost in USD; unpriced calls add none)
        "llm": _empty_llm(),
        "processes": processes,
        "seed": seed,
    }


def record(summary: dict[str, Any], script: ExecutionScript) -> None:
    """Count one execution that was played to its end."""
    ok, calls = script.succeeded, script.tool_calls
    profile = summary["by_profile"][script.profile.name]
    # What its LLM calls cost, in the order they were made (the execution's USD budget).
    spent_usd = sum(cost for plan in script.llm_calls
                    if (cost := _record_llm(summary["llm"], plan)) is not None)
    usd = script.profile.budget_ceiling_usd
    # An execution counts once whichever budget (cost units, USD) crosses.
    warned = script.budget_warning or (usd is not None and spent_usd >= BUDGET_WARNING_RATIO * usd)
    exceeded = script.budget_exceeded or (usd is not None and spent_usd > usd)
    for bucket in (summary, profile):
        bucket["executions"] += 1
        bucket["successful" if ok else "failed"] += 1
        bucket["budget_used"] += script.spent
        bucket["budget_warnings"] += warned
        bucket["budget_exceeded"] += exceeded
        bucket["steps"] += calls
    summary["tool_calls"] += calls
    if script.failure:
        summary["failure_reasons"][script.failure] += 1
    for step in script.steps:
        if step.approval:
            summary["approvals"][step.approval.decision] += 1
        for attempt in step.attempts:
            errored = attempt.error_type is not None
            for bucket in (summary["by_domain"][step.tool.domain],
                           summary["by_tool"][step.tool.name]):
                bucket["calls"] += 1
                bucket["errors"] += errored
            if errored:
                summary["tool_errors"] += 1
                types = summary["error_types"]
                types[attempt.error_type] = types.get(attempt.error_type, 0) + 1


def _record_llm(llm: dict[str, Any], plan: Any) -> float | None:
    """Count one LLM call; its cost in USD (None: failed, or no price)."""
    model = llm["by_model"][plan.provider][plan.model]
    cost = None
    if plan.error_type is None:
        cost = _price_table().cost(plan.provider, plan.model, plan.input_tokens,
                                   plan.output_tokens)
    for bucket in (llm, model):
        bucket["calls"] += 1
        if plan.error_type is not None:
            bucket["errors"] += 1
            continue
        bucket["input_tokens"] += plan.input_tokens
        bucket["output_tokens"] += plan.output_tokens
        if cost is None:
            bucket["unpriced_calls"] += 1
        else:
            bucket["cost_usd"] += cost
    return cost


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum worker summaries into one (processes = number of parts)."""
    seeds = {p.get("seed") for p in parts}
    total = empty_summary(processes=len(parts), seed=seeds.pop() if len(seeds) == 1 else None)
    for part in parts:
        _add(total, part)
    total["error_types"] = dict(sorted(total["error_types"].items()))
    return total


def _add(into: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if key in ("processes", "seed", "interrupted"):
            continue
        if isinstance(value, dict):
            _add(into.setdefault(key, {}), value)
        else:
            into[key] = into.get(key, 0) + value
