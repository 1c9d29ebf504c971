"""The /dashboard summary: fleet-wide numbers over a window, computed from Prometheus only.

Nothing is kept in the API process, so any number of API workers or replicas give the same
answer. Ratios are None when their denominator is 0 (an idle fleet has no success rate; it
does not have a success rate of 0).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

from otel.catalogue import (
    APPROVAL_WAIT, APPROVALS, BUDGET_EXCEEDED, BUDGET_USED, BUDGET_UTILIZATION, BUDGET_WARNINGS,
    DOMAIN_ERRORS, DOMAIN_USAGE, EXECUTION_DURATION, EXECUTION_STEPS, EXECUTIONS,
    GEN_AI_MODEL, GEN_AI_PROVIDER, LATENCY_PERCENTILES, LLM_COST, LLM_COST_UNPRICED,
    LLM_INPUT_TOKENS, LLM_OPERATION_DURATION, LLM_OUTPUT_TOKENS, TOOL_CALLS, TOOL_ERRORS,
    MetricSpec, label_name,
)
from services.monitoring.queries import count, quantile

from .active_alerts import active_alerts
from .freshness import assess
from .history import History
from .prometheus import PrometheusClient, Sample
from .window import Window, iso

MS_PER_S = 1000  # the duration histograms are in seconds; the summary reports milliseconds


@dataclass(frozen=True)
class _Query:
    key: str
    promql: str


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def _outcome_rates(successful: int, failed: int, total: int) -> dict[str, float | None]:
    """The executions' success and error rates (None for an idle fleet)."""
    return {"success_rate": _ratio(successful, total), "error_rate": _ratio(failed, total)}


def _count(value: float | None) -> int:
    return int(round(value or 0.0))


def _total(samples: list[Sample]) -> float:
    return sum(s.value or 0.0 for s in samples)


def _by(samples: list[Sample], *labels: str) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for s in samples:
        out[tuple(s.labels.get(label, "") for label in labels)] += s.value or 0.0
    return out


_MEANS = (EXECUTION_DURATION, APPROVAL_WAIT, EXECUTION_STEPS, BUDGET_UTILIZATION)


def _latency(q: float, w: str) -> str:
    return quantile(q, EXECUTION_DURATION, w, factor=MS_PER_S)


def _queries(w: str) -> list[_Query]:
    qs = [
        _Query("executions", count(EXECUTIONS, w, ("outcome", "profile"))),
        _Query("tool_calls", count(TOOL_CALLS, w, ("tool", "outcome"))),
        _Query("tool_errors", count(TOOL_ERRORS, w, ("error_type",))),
        _Query("domain_usage", count(DOMAIN_USAGE, w, ("domain",))),
        _Query("domain_errors", count(DOMAIN_ERRORS, w, ("domain",))),
        _Query("budget_used", count(BUDGET_USED, w, ("profile",))),
        _Query("budget_exceeded", count(BUDGET_EXCEEDED, w)),
        _Query("budget_warnings", count(BUDGET_WARNINGS, w)),
        _Query("approvals", count(APPROVALS, w, ("decision",))),
    ]
    for hist in _MEANS:
        for suffix in ("_sum", "_count"):
            qs.append(_Query(hist.series(suffix), count(hist, w, suffix=suffix)))
    for name, q in LATENCY_PERCENTILES.items():
        qs.append(_Query(f"latency_{name}", _latency(q, w)))
    model = (_PROVIDER, _MODEL)
    qs += [
        _Query("llm_calls", count(LLM_OPERATION_DURATION, w, model, "_count")),
        _Query("llm_errors", count(LLM_OPERATION_DURATION, w, model, "_count",
                                   ['error_type!=""'])),
        _Query("llm_input_tokens", count(LLM_INPUT_TOKENS, w, model)),
        _Query("llm_output_tokens", count(LLM_OUTPUT_TOKENS, w, model)),
        _Query("llm_cost_usd", count(LLM_COST, w, model)),
        _Query("llm_unpriced_calls", count(LLM_COST_UNPRICED, w, model)),
    ]
    return qs


_PROVIDER, _MODEL = label_name(GEN_AI_PROVIDER), label_name(GEN_AI_MODEL)
_LLM_COUNTS = ("calls", "errors", "input_tokens", "output_tokens", "unpriced_calls")


def _llm(r: dict[str, list[Sample]], ratio) -> dict:
    """LLM calls, tokens and cost (USD) in the window, in total and per provider and model
    (most expensive first)."""
    per = {key: _by(r[f"llm_{key}"], _PROVIDER, _MODEL) for key in (*_LLM_COUNTS, "cost_usd")}
    models = sorted(set().union(*per.values()))
    by_model = [{"provider": provider, "model": model,
                 **{k: _count(per[k].get((provider, model))) for k in _LLM_COUNTS},
                 "cost_usd": per["cost_usd"].get((provider, model), 0.0)}
                for provider, model in models]
    by_model.sort(key=lambda m: (-m["cost_usd"], -m["calls"], m["provider"], m["model"]))
    totals = {k: sum(m[k] for m in by_model) for k in (*_LLM_COUNTS, "cost_usd")}
    return {**totals, "error_rate": ratio(totals["errors"], totals["calls"]),
            "by_model": by_model}


async def _run(prom: PrometheusClient, queries: list[_Query], at: float,
               timeout: float | None = None) -> dict[str, list[Sample]]:
    results = await asyncio.gather(*(prom.query(q.promql, at, timeout) for q in queries))
    return {q.key: r for q, r in zip(queries, results)}


def _mean(r: dict[str, list[Sample]], hist: MetricSpec, factor: float = 1) -> float | None:
    mean = _ratio(_total(r[hist.series("_sum")]), _total(r[hist.series("_count")]))
    return None if mean is None else mean * factor


def _quantile(samples: list[Sample]) -> float | None:
    return samples[0].value if samples else None


async def _nothing() -> None:
    return None


async def dashboard(prom: PrometheusClient, window: Window, at: float,
                    with_history: bool = False) -> dict:
    """The summary; `with_history` adds the `history` section (history.py)."""
    past = History(window, at) if with_history else None
    r, alerts, fresh, _ = await asyncio.gather(
        _run(prom, _queries(window.promql), at), active_alerts(prom, at),
        assess(prom, window, at), past.fetch(prom) if past else _nothing())
    partial = fresh.partial
    # Ratios, quantiles and means of a window missing part of its data are not a bound of
    # anything: absent while partial, never a plausible wrong number. Counts stay (lower bounds).
    ratio = (lambda part, whole: None) if partial else _ratio

    by_outcome_profile = _by(r["executions"], "outcome", "profile")
    successful = _count(sum(v for (o, _), v in by_outcome_profile.items() if o == "success"))
    failed = _count(sum(v for (o, _), v in by_outcome_profile.items() if o == "failure"))
    total = _count(sum(by_outcome_profile.values()))
    by_profile: dict[str, dict[str, int]] = {}
    for (outcome, profile), value in sorted(by_outcome_profile.items(), key=lambda kv: kv[0][1]):
        entry = by_profile.setdefault(profile, {"total": 0, "successful": 0, "failed": 0})
        entry["total"] += _count(value)
        if outcome == "success":
            entry["successful"] += _count(value)
        elif outcome == "failure":
            entry["failed"] += _count(value)

    tool_calls = _by(r["tool_calls"], "tool", "outcome")
    calls = _count(sum(tool_calls.values()))
    errors = _count(sum(v for (_, o), v in tool_calls.items() if o == "error"))
    by_tool: dict[str, dict[str, int]] = {}
    for (tool, outcome), value in sorted(tool_calls.items()):
        entry = by_tool.setdefault(tool, {"calls": 0, "errors": 0})
        entry["calls"] += _count(value)
        if outcome == "error":
            entry["errors"] += _count(value)

    usage = _by(r["domain_usage"], "domain")
    domain_errors = _by(r["domain_errors"], "domain")
    domains = {}
    for (domain,) in sorted(set(usage) | set(domain_errors)):
        d_calls, d_errors = _count(usage.get((domain,))), _count(domain_errors.get((domain,)))
        domains[domain] = {"calls": d_calls, "errors": d_errors,
                           "error_rate": ratio(d_errors, d_calls)}

    approvals = {d: _count(v) for (d,), v in _by(r["approvals"], "decision").items()}
    approval_total = sum(approvals.values())
    approval_wait = None if partial else _mean(r, APPROVAL_WAIT, MS_PER_S)
    utilization = None if partial else _mean(r, BUDGET_UTILIZATION)
    steps_per_execution = _mean(r, EXECUTION_STEPS)
    latency = {name: _quantile(r[f"latency_{name}"]) for name in LATENCY_PERCENTILES}
    latency["mean"] = _mean(r, EXECUTION_DURATION, MS_PER_S)

    golden = {
        **_outcome_rates(successful, failed, total),
        "latency_ms": latency,
        "approval_wait_time_ms": approval_wait,
        "tool_error_rate": _ratio(errors, calls),
        "budget_utilization": utilization,
        "steps_per_execution": steps_per_execution,
    }
    if partial:
        golden = {k: ({p: None for p in v} if isinstance(v, dict) else None)
                  for k, v in golden.items()}
    return {
        "status": fresh.status,
        "degraded": fresh.degraded,
        "partial": {"reason": fresh.partial_reason(), "missing": fresh.missing,
                    "inexact_start": fresh.inexact_start} if partial
        else None,
        "freshness": fresh.body(),
        "time_range": {"window": str(window), "seconds": window.seconds,
                       "start": iso(at - window.seconds), "end": iso(at)},
        "golden_signals": {**golden, "partial": partial, "missing": fresh.missing},
        "executions": {"total": total, "successful": successful, "failed": failed,
                       "steps": _count(_total(r[EXECUTION_STEPS.series("_sum")])),
                       "by_profile": by_profile, "partial": partial},
        "budget": {"used": _total(r["budget_used"]),
                   "used_by_profile": {p: v for (p,), v in sorted(_by(r["budget_used"],
                                                                      "profile").items())},
                   "exceeded": _count(_total(r["budget_exceeded"])),
                   "warnings": _count(_total(r["budget_warnings"])),
                   "utilization": utilization},
        "approvals": {"total": approval_total,
                      "approved": approvals.get("approved", 0),
                      "rejected": approvals.get("rejected", 0),
                      "timeout": approvals.get("timeout", 0),
                      "mean_wait_ms": approval_wait},
        "tools": {"calls": calls, "errors": errors, "success_rate": ratio(calls - errors, calls),
                  "by_tool": by_tool,
                  "errors_by_type": {t: _count(v) for (t,), v in
                                     sorted(_by(r["tool_errors"], "error_type").items())}},
        "domains": domains,
        "llm": _llm(r, ratio),
        "alerts": alerts,
        **({"history": past.section(fresh)} if past else {}),
    }


async def health_summary(prom: PrometheusClient, window: Window, at: float,
                         timeout: float) -> dict:
    """The earlier system's small /health metrics block, from the same window arithmetic."""
    w = window.promql
    r = await _run(prom, [
        _Query("executions", count(EXECUTIONS, w, ("outcome",))),
        _Query("p95", _latency(LATENCY_PERCENTILES["p95"], w)),
    ], at, timeout)
    by_outcome = _by(r["executions"], "outcome")
    total = _count(sum(by_outcome.values()))
    return {"window": str(window), "total_executions": total,
            **_outcome_rates(_count(by_outcome.get(("success",))),
                             _count(by_outcome.get(("failure",))), total),
            "latency_p95_ms": _quantile(r["p95"])}
