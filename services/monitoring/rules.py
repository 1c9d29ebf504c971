"""The Prometheus rules, as data: recording rules (per-window increases, the golden signals of
otel/catalogue.py, the earlier system's per-instance counters) and alert rules (the ten agent alerts and
the pipeline alerts), every expression built from queries.py and every number from
tunables.py. `python -m services.monitoring` writes them to monitoring/prometheus/rules/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from otel import catalogue
from otel.catalogue import (
    APPROVAL_TIMEOUTS, APPROVAL_WAIT, BUDGET_EXCEEDED, BUDGET_UTILIZATION, DOMAIN_ERRORS,
    EXECUTION_DURATION, EXECUTION_STEPS, EXECUTIONS, LATENCY_PERCENTILES, LLM_COST,
    LLM_OPERATION_DURATION, LLM_TOKEN_USAGE, OUTCOME, PROFILE, TOOL_CALLS, MetricSpec,
)

from . import queries as q
from . import tunables
from .tunables import ALERTS, BUDGET_WINDOW, GOLDEN_WINDOW, Alert

MS_PER_S = 1000  # histograms are in seconds (UCUM "s"); the golden signals keep the earlier system's ms


@dataclass(frozen=True)
class Increase:
    """A recorded fleet-wide growth of one counter series in a window, kept by labels."""

    spec: MetricSpec
    suffix: str = ""
    by: tuple[str, ...] = ()
    window: str = GOLDEN_WINDOW

    @property
    def record(self) -> str:
        level = "_".join(self.by) if self.by else "fleet"
        return f"{level}:{self.spec.series(self.suffix)}:increase{self.window}"

    def expr(self) -> str:
        return q.count(self.spec, self.window, self.by, self.suffix)


EXECUTIONS_BY_OUTCOME = Increase(EXECUTIONS, by=(OUTCOME,))
TOOL_CALLS_BY_OUTCOME = Increase(TOOL_CALLS, by=(OUTCOME,))
DOMAIN_ERRORS_BY_DOMAIN = Increase(DOMAIN_ERRORS, by=("domain",))
APPROVAL_TIMEOUTS_5M = Increase(APPROVAL_TIMEOUTS)
BUDGET_EXCEEDED_1H = Increase(BUDGET_EXCEEDED, window=BUDGET_WINDOW)
DURATION_BUCKETS = Increase(EXECUTION_DURATION, "_bucket", ("le",))


def _sum_and_count(spec: MetricSpec) -> tuple[Increase, Increase]:
    return Increase(spec, "_sum"), Increase(spec, "_count")


APPROVAL_WAIT_SUM, APPROVAL_WAIT_COUNT = _sum_and_count(APPROVAL_WAIT)
UTILIZATION_SUM, UTILIZATION_COUNT = _sum_and_count(BUDGET_UTILIZATION)
STEPS_SUM, STEPS_COUNT = _sum_and_count(EXECUTION_STEPS)

# LLM tokens (input and output: the token-usage histogram's sum holds both) in the spike
# alert's window and in its baseline window.
LLM_TOKENS = Increase(LLM_TOKEN_USAGE, "_sum", window=tunables.LLM_TOKEN_WINDOW)
LLM_TOKENS_BASELINE = Increase(LLM_TOKEN_USAGE, "_sum", window=tunables.LLM_TOKEN_BASELINE_WINDOW)

# GenAI agents of any framework (collector-derived), per service and agent name (tools: per
# service and tool name, the agent being optional on tool spans).
_BY_AGENT = ("job", catalogue.label_name(catalogue.GENAI_AGENT_NAME))
_BY_TOOL = ("job", catalogue.label_name(catalogue.GENAI_TOOL_NAME))
GENAI_INVOCATIONS = Increase(catalogue.GENAI_AGENT_INVOCATIONS.spec, by=_BY_AGENT)
GENAI_AGENT_FAILURES = Increase(catalogue.GENAI_AGENT_ERRORS.spec, by=_BY_AGENT)
GENAI_AGENT_BUCKETS = Increase(catalogue.GENAI_AGENT_DURATION.spec, "_bucket", ("le", *_BY_AGENT))
GENAI_TOOL_CALLS = Increase(catalogue.GENAI_TOOL_CALLS.spec, by=_BY_TOOL)
GENAI_TOOL_FAILURES = Increase(catalogue.GENAI_TOOL_ERRORS.spec, by=_BY_TOOL)

INCREASES: tuple[Increase, ...] = (
    EXECUTIONS_BY_OUTCOME, TOOL_CALLS_BY_OUTCOME, DOMAIN_ERRORS_BY_DOMAIN, APPROVAL_TIMEOUTS_5M,
    BUDGET_EXCEEDED_1H, DURATION_BUCKETS, APPROVAL_WAIT_SUM, APPROVAL_WAIT_COUNT,
    UTILIZATION_SUM, UTILIZATION_COUNT, STEPS_SUM, STEPS_COUNT, LLM_TOKENS, LLM_TOKENS_BASELINE,
    GENAI_INVOCATIONS, GENAI_AGENT_FAILURES, GENAI_AGENT_BUCKETS, GENAI_TOOL_CALLS,
    GENAI_TOOL_FAILURES,
)


def _comment(text: str, expr: str) -> str:
    """`expr` after a PromQL comment (it survives into the YAML, for the SRE reading it)."""
    return f"# {text}\n{expr}"


def _share_of(increase: Increase, value: str) -> str:
    r = increase.record
    return _comment(
        f'No {OUTCOME}="{value}" series in the window is a true 0; an idle window has none.',
        q.ratio(q.or_zero(f'sum({r}{{{OUTCOME}="{value}"}})'), f"sum({r})"))


def _mean_of(total: Increase, count: Increase, factor: float = 1) -> str:
    return q.ratio(q.scaled(total.record, factor), count.record)


def golden_signal_rules() -> list[dict]:
    buckets = DURATION_BUCKETS.record
    exprs: dict[str, list[tuple[str, dict]]] = {
        "cugar_success_rate": [(_share_of(EXECUTIONS_BY_OUTCOME, "success"), {})],
        "cugar_error_rate": [(_share_of(EXECUTIONS_BY_OUTCOME, "failure"), {})],
        "cugar_latency_ms": [
            (_comment("Seconds to ms; absent (not NaN) when the window saw no execution.",
                      q.quantile_of(p, buckets, f'{buckets}{{le="+Inf"}}', MS_PER_S)),
             {"percentile": name})
            for name, p in LATENCY_PERCENTILES.items()],
        "cugar_approval_wait_time_ms": [
            (_mean_of(APPROVAL_WAIT_SUM, APPROVAL_WAIT_COUNT, MS_PER_S), {})],
        "cugar_tool_error_rate": [(_share_of(TOOL_CALLS_BY_OUTCOME, "error"), {})],
        "cugar_budget_utilization": [(_mean_of(UTILIZATION_SUM, UTILIZATION_COUNT), {})],
        "cugar_steps_per_execution": [(_mean_of(STEPS_SUM, STEPS_COUNT), {})],
    }
    assert set(exprs) == {g.name for g in catalogue.GOLDEN_SIGNALS}
    return [{"record": name, "expr": expr, **({"labels": labels} if labels else {})}
            for name, variants in exprs.items() for expr, labels in variants]


def per_outcome_counter_rules() -> list[dict]:
    """The earlier system's counters, per instance: every label of the conventional counter but the one
    that tells them apart."""
    return [{"record": name,
             "expr": f"sum without ({label}) ({q.select(spec, matchers=[q.eq(label, value)])})"}
            for name, (spec, label, value) in catalogue.PER_OUTCOME_RECORDED.items()]


def recording_groups() -> list[dict]:
    return [
        {"name": "cugar-window-increases",
         "rules": [{"record": i.record, "expr": i.expr()} for i in INCREASES]},
        {"name": "cugar-golden-signals", "rules": golden_signal_rules()},
        {"name": "cugar-per-outcome-counters", "rules": per_outcome_counter_rules()},
    ]


# --- alerts ----------------------------------------------------------------------------------

_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}


def human(duration: str, article: bool = False) -> str:
    """`5m` -> "5 minutes"; with `article`, `1h` -> "hour" (as in "in the last hour")."""
    n, unit = re.fullmatch(r"(\d+)([smhd])", duration).groups()
    word = _UNITS[unit]
    if n == "1":
        return word if article else f"1 {word}"
    return f"{n} {word}s"


def _pct(ratio: float) -> str:
    return f"{ratio:.0%}"


def _g(value: float) -> str:
    return f"{value:g}"


def _alert(a: Alert, expr: str, summary: str, description: str) -> dict:
    rule: dict = {"alert": a.name, "expr": expr}
    if a.for_:
        rule["for"] = a.for_
    rule["labels"] = {"severity": a.severity, "family": a.family}
    rule["annotations"] = {"summary": summary, "description": description,
                           "runbook_url": a.runbook_url}
    return rule


PCT = "{{ $value | humanizePercentage }}"
NUM = "{{ $value | humanize }}"
MS = '{{ $value | printf "%.0f" }}ms'


def agent_alert_rules() -> list[dict]:
    low, crit, err = ALERTS["LowSuccessRate"], ALERTS["CriticalSuccessRate"], ALERTS["HighErrorRate"]
    p95, p99 = ALERTS["HighLatencyP95"], ALERTS["HighLatencyP99"]
    budget, tools = ALERTS["FrequentBudgetExceeded"], ALERTS["HighToolErrorRate"]
    approvals, quiet, domains = (ALERTS["ApprovalTimeouts"], ALERTS["NoRecentExecutions"],
                                 ALERTS["DomainErrors"])
    w = GOLDEN_WINDOW
    rules = [
        _alert(a, f"cugar_success_rate < {_g(a.threshold)}",
               f"CUGAr success rate below {_pct(a.threshold)} ({PCT})",
               f"Only {PCT} of agent executions succeeded over the last {w}, fleet-wide, "
               f"for {human(a.for_)}.")
        for a in (low, crit)]
    rules.append(_alert(
        err, f"cugar_error_rate > {_g(err.threshold)}",
        f"CUGAr execution error rate above {_pct(err.threshold)} ({PCT})",
        f"{PCT} of agent executions failed over the last {w}, fleet-wide, for {human(err.for_)}."))
    for a, name in ((p95, "p95"), (p99, "p99")):
        nth = f"{round(LATENCY_PERCENTILES[name] * 100)}th"
        rules.append(_alert(
            a, f'cugar_latency_ms{{percentile="{name}"}} > {_g(a.threshold)}',
            f"CUGAr {name} execution latency above {_g(a.threshold / MS_PER_S)}s ({MS})",
            f"{nth} percentile execution duration over the last {w} is {MS} "
            f"(threshold {_g(a.threshold)}ms) for {human(a.for_)}."))
    last = human(budget.window, article=True)
    rules.append(_alert(
        budget, f"{BUDGET_EXCEEDED_1H.record} > {_g(budget.threshold)}",
        f"CUGAr budget exceeded {NUM} times in the last {last}",
        f"{NUM} executions exceeded their budget ceiling in the last {last}, fleet-wide "
        f"(threshold {_g(budget.threshold)})."))
    rules.append(_alert(
        tools, f"cugar_tool_error_rate > {_g(tools.threshold)}",
        f"CUGAr tool error rate above {_pct(tools.threshold)} ({PCT})",
        f"{PCT} of tool calls errored over the last {w}, fleet-wide, for {human(tools.for_)}."))
    rules.append(_alert(
        approvals, f"{APPROVAL_TIMEOUTS_5M.record} > {_g(approvals.threshold)}",
        f"CUGAr approval requests are timing out ({NUM} in {w})",
        f"{NUM} human approval gates timed out in the last {w}; risky tool calls are being "
        "blocked without a decision."))
    rules.append(_alert(
        quiet,
        _comment("No series at all (no agent has reported, or none in the window) counts as 0.",
                 f"{q.or_zero(f'sum({EXECUTIONS_BY_OUTCOME.record})')} == {_g(quiet.threshold)}"),
        f"No CUGAr executions for {human(quiet.for_)}",
        f"No agent execution finished anywhere in the fleet for at least {human(quiet.for_)} "
        "(or no agent has reported at all)."))
    rules.append(_alert(
        domains, f"{DOMAIN_ERRORS_BY_DOMAIN.record} > {_g(domains.threshold)}",
        f"CUGAr domain {{{{ $labels.domain }}}}: {NUM} tool errors in {w}",
        f"Tool calls in the {{{{ $labels.domain }}}} domain errored {NUM} times in the last {w}, "
        f"fleet-wide (threshold {_g(domains.threshold)})."))
    order = [a.name for a in tunables.AGENT_ALERTS]
    return sorted(rules, key=lambda r: order.index(r["alert"]))


def _signal_rates(names: dict[str, str], by: tuple[str, ...], window: str) -> str:
    return q.keep(by, q.per_signal(names, lambda n: f"rate({q.collector(n)}[{window}])"))


def pipeline_alert_rules() -> list[dict]:
    refusing, failing = ALERTS["CollectorRefusingData"], ALERTS["CollectorExportFailing"]
    queue, down = ALERTS["CollectorExporterQueueFull"], ALERTS["ScrapeTargetDown"]
    overflow = ALERTS["CollectorCardinalityOverflow"]
    invalid, dropped = ALERTS["CollectorDroppingInvalidPoints"], ALERTS["SendersDroppingTelemetry"]
    inst = "{{ $labels.instance }}"
    return [
        _alert(refusing,
               f"{_signal_rates(q.RECEIVER_REFUSED, ('job', 'instance', 'receiver', 'signal'), refusing.window)}"
               f" > {_g(refusing.threshold)}",
               f"Collector {inst} refuses {{{{ $labels.signal }}}} ({NUM}/s)",
               f"Receiver {{{{ $labels.receiver }}}} on {inst} has been refusing "
               f"{{{{ $labels.signal }}}} for {human(refusing.for_)} (usually the memory_limiter "
               "pushing back); senders retry or drop."),
        _alert(failing,
               f"{_signal_rates(q.EXPORTER_SEND_FAILED, ('job', 'instance', 'exporter', 'signal'), failing.window)}"
               f" > {_g(failing.threshold)}",
               f"Collector {inst} fails to send {{{{ $labels.signal }}}} via "
               "{{ $labels.exporter }}",
               f"Exporter {{{{ $labels.exporter }}}} on {inst} has been failing to send "
               f"{{{{ $labels.signal }}}} for {human(failing.for_)} ({NUM}/s); data is being lost "
               "after retries."),
        _alert(queue,
               f"{q.queue_fill(('job', 'instance', 'exporter', 'data_type'))} > {_g(queue.threshold)}",
               f"Collector {inst} exporter {{{{ $labels.exporter }}}} queue {PCT} full",
               f"The sending queue of {{{{ $labels.exporter }}}} ({{{{ $labels.data_type }}}}) on "
               f"{inst} has been above {_pct(queue.threshold)} of its capacity for "
               f"{human(queue.for_)}; new data is dropped once it is full."),
        _alert(down, f"{q.select_name(q.UP, tunables.SCRAPE_SELECTOR)} == 0",
               f"Prometheus cannot scrape {{{{ $labels.job }}}} at {inst}",
               f"Scrape target {inst} of job {{{{ $labels.job }}}} has been down for "
               f"{human(down.for_)}; its metrics (and the golden signals fed by it) are missing."),
        _alert(overflow,
               q.keep(("job", "instance", "service", "metric", "attribute"),
                      f"rate({q.collector(q.CARDINALITY_OVERFLOW)}[{overflow.window}])")
               + f" > {_g(overflow.threshold)}",
               "Service {{ $labels.service }} overflows {{ $labels.metric }} "
               "label {{ $labels.attribute }}",
               "The collector's cardinality guard on " + inst + " has been replacing "
               "{{ $labels.attribute }} values of {{ $labels.metric }} from service "
               "{{ $labels.service }} with \"other\" (" + NUM + " points/s) for "
               f"{human(overflow.for_)}: values outside the catalogue's set, or more distinct "
               "values than its bound per service. Totals stay exact; the breakdown is partial."),
        _alert(invalid,
               q.keep(("job", "instance", "filter"),
                      f"rate({q.collector(q.FILTERED_POINTS)}[{invalid.window}])")
               + f" > {_g(invalid.threshold)}",
               f"Collector {inst} drops invalid metric points ({NUM}/s)",
               f"{{{{ $labels.filter }}}} on {inst} has been dropping metric points for "
               f"{human(invalid.for_)} ({NUM}/s): NaN or infinite values, decreasing or "
               "negative counters, delta temporality or malformed histograms from some sender. "
               "Those points never reach Prometheus; the sender's counts there are incomplete."),
        _alert(dropped,
               q.keep(("job", "instance", "signal", "reason"),
                      q.increase(q.select(catalogue.TELEMETRY_DROPPED), dropped.window))
               + f" > {_g(dropped.threshold)}",
               "{{ $labels.job }} " + inst + " dropped " + NUM + " {{ $labels.signal }} items "
               "({{ $labels.reason }})",
               f"{{{{ $labels.job }}}} ({inst}) discarded {NUM} {{{{ $labels.signal }}}} items "
               f"before the collector accepted them in the last {dropped.window} (reason "
               "{{ $labels.reason }}: queue_full = collector down or slow, export_failed = the "
               "exporter gave up after its retries, shutdown = left at exit). Those items are "
               "gone; the process's counts say how many."),
    ]


def alert_delivery_rules() -> list[dict]:
    """Alerts about alerts, after the upstream alertmanager and prometheus mixins."""
    failing, erroring, alone = (ALERTS["AlertmanagerFailedToSendNotifications"],
                                ALERTS["PrometheusErrorSendingAlertsToAnyAlertmanager"],
                                ALERTS["PrometheusNotConnectedToAlertmanagers"])
    inst = "{{ $labels.instance }}"

    def rate_of(name: str, window: str) -> str:
        return f"rate({name}[{window}])"

    w = failing.window
    failed = rate_of(q.alertmanager(q.AM_NOTIFICATIONS_FAILED), w)
    attempted = rate_of(q.alertmanager(q.AM_NOTIFICATIONS), w)
    w = erroring.window
    errors = rate_of(q.prometheus(q.PROM_NOTIFICATIONS_ERRORS), w)
    sent = rate_of(q.prometheus(q.PROM_NOTIFICATIONS_SENT), w)
    return [
        _alert(failing,
               _comment("Share of notifications that failed after Alertmanager's retries, per "
                        "receiver, integration and reason.",
                        f"(\n  {failed}\n/ ignoring (reason) group_left\n  {attempted}\n)"
                        f" > {_g(failing.threshold)}"),
               "Alertmanager cannot deliver to receiver {{ $labels.receiver_name }} "
               f"({{{{ $labels.integration }}}}, {PCT} failing)",
               f"Alertmanager {inst} failed to send {PCT} of its {{{{ $labels.integration }}}} "
               "notifications to receiver {{ $labels.receiver_name }} "
               f"({{{{ $labels.reason }}}}) over the last {w}, for {human(failing.for_)}; the "
               "pages routed there are not reaching anyone."),
        _alert(erroring,
               _comment("`sent` counts only successful sends: the failed share is errors / "
                        "(errors + sent). `min` over Alertmanagers: every one of them fails.",
                        f"min without (alertmanager) (\n  {errors}\n/\n  ({errors} + {sent})\n)"
                        f" > {_g(erroring.threshold)}"),
               f"Prometheus {inst} cannot send alerts to any Alertmanager ({PCT} failing)",
               f"{PCT} of the alerts Prometheus {inst} sent over the last {w} failed at every "
               f"Alertmanager, for {human(erroring.for_)}; no notification goes out while it "
               "lasts (Prometheus re-sends firing alerts once one answers again)."),
        _alert(alone,
               f"max_over_time({q.prometheus(q.PROM_ALERTMANAGERS_DISCOVERED)}[{alone.window}])"
               f" < {_g(alone.threshold)}",
               f"Prometheus {inst} has no Alertmanager to send alerts to",
               f"Prometheus {inst} has discovered no Alertmanager for {human(alone.for_)}; its "
               "alerts fire on its own pages and /dashboard only, nobody is notified."),
    ]


def _window_minutes(window: str) -> int:
    n, unit = re.fullmatch(r"(\d+)([mh])", window).groups()
    return int(n) * (60 if unit == "h" else 1)


def llm_alert_rules() -> list[dict]:
    """Cost over budget, token spike, LLM error rate (one signal each)."""
    cost, spike, errors = (ALERTS["LLMCostOverBudget"], ALERTS["LLMTokenSpike"],
                           ALERTS["HighLLMErrorRate"])
    budgets = tunables.LLM_PROFILE_HOURLY_BUDGET_USD
    listed = "|".join(budgets)
    spend = [(q.count(LLM_COST, cost.window, (PROFILE,), matchers=[q.eq(PROFILE, p)]), usd)
             for p, usd in budgets.items()]
    spend.append((q.count(LLM_COST, cost.window, (PROFILE,),
                          matchers=[f'{PROFILE}!~"{listed}"'] if listed else []), cost.threshold))
    baseline_windows = (_window_minutes(tunables.LLM_TOKEN_BASELINE_WINDOW)
                        // _window_minutes(spike.window))
    tokens, before = LLM_TOKENS.record, LLM_TOKENS_BASELINE.record
    failed = q.count(LLM_OPERATION_DURATION, errors.window, suffix="_count",
                     matchers=['error_type!=""'])
    calls = q.count(LLM_OPERATION_DURATION, errors.window, suffix="_count")
    last = human(cost.window, article=True)
    usd = '{{ $value | printf "%.2f" }} USD'
    return [
        _alert(cost,
               _comment(f"Each profile's LLM spend in the last {cost.window} against its budget "
                        "(tunables.py: listed profiles first, the default for the others).",
                        "\nor\n".join(f"{expr} > {_g(limit)}" for expr, limit in spend)),
               f"CUGAr profile {{{{ $labels.profile }}}} spent {usd} on LLM calls in the last {last}",
               f"LLM calls of profile {{{{ $labels.profile }}}} cost {usd} in the last {last}, "
               f"over its budget for that window ({_g(cost.threshold)} USD unless "
               "tunables.LLM_PROFILE_HOURLY_BUDGET_USD sets one)."),
        _alert(spike,
               _comment(f"Tokens in the last {spike.window} against the mean {spike.window} of "
                        f"the {tunables.LLM_TOKEN_BASELINE_WINDOW} before (absent without a "
                        f"baseline); below {tunables.LLM_TOKEN_SPIKE_MIN} tokens no jump counts.",
                        f"{tokens} > {tunables.LLM_TOKEN_SPIKE_MIN}\nand\n{tokens}\n/\n"
                        f"({before} offset {spike.window} / {baseline_windows} > 0)"
                        f" > {_g(spike.threshold)}"),
               f"CUGAr LLM tokens {NUM} in {spike.window}, over {_g(spike.threshold)}x the baseline",
               f"LLM calls used {NUM} tokens (input and output) in the last {spike.window}, "
               f"fleet-wide: more than {_g(spike.threshold)} times the mean {spike.window} of the "
               f"{tunables.LLM_TOKEN_BASELINE_WINDOW} before, for {human(spike.for_)}."),
        _alert(errors,
               _comment("Share of LLM calls that ended with an error.type (rate limits, "
                        "timeouts, provider errors); absent when nothing was called.",
                        f"{q.ratio(failed, calls)} > {_g(errors.threshold)}"),
               f"CUGAr LLM error rate above {_pct(errors.threshold)} ({PCT})",
               f"{PCT} of LLM calls failed over the last {errors.window}, fleet-wide, for "
               f"{human(errors.for_)}."),
    ]


def genai_alert_rules() -> list[dict]:
    """Agents of any framework, from their spans: failed invocations, failed tool calls, slow
    invocations, per service and agent (tool) name."""
    errors, tools, slow = (ALERTS["GenAIAgentErrorRateHigh"], ALERTS["GenAIToolErrorRateHigh"],
                           ALERTS["GenAIAgentLatencyP95High"])
    agent = "{{ $labels.gen_ai_agent_name }}"
    job = "{{ $labels.job }}"
    buckets = GENAI_AGENT_BUCKETS.record
    p95 = LATENCY_PERCENTILES["p95"]
    seconds = '{{ $value | printf "%.1f" }}s'
    quantile = q.quantile_of(p95, buckets, f'{buckets}{{le="+Inf"}}', by=_BY_AGENT)
    return [
        _alert(errors,
               _comment("Per service and agent; absent for an agent without failures or "
                        "invocations in the window.",
                        f"{q.ratio(GENAI_AGENT_FAILURES.record, GENAI_INVOCATIONS.record)}"
                        f" > {_g(errors.threshold)}"),
               f"GenAI agent {agent} ({job}) error rate above {_pct(errors.threshold)} ({PCT})",
               f"{PCT} of the invocations of agent {agent} in service {job} failed over the last "
               f"{errors.window}, for {human(errors.for_)}."),
        _alert(tools,
               _comment("Per service and tool name.",
                        f"{q.ratio(GENAI_TOOL_FAILURES.record, GENAI_TOOL_CALLS.record)}"
                        f" > {_g(tools.threshold)}"),
               f"GenAI tool {{{{ $labels.gen_ai_tool_name }}}} ({job}) error rate above "
               f"{_pct(tools.threshold)} ({PCT})",
               f"{PCT} of the calls of tool {{{{ $labels.gen_ai_tool_name }}}} in service {job} "
               f"failed over the last {tools.window}, for {human(tools.for_)}."),
        _alert(slow,
               _comment("Seconds; absent (not NaN) when the agent was not invoked in the window.",
                        f"(\n  {quantile}\n) > {_g(slow.threshold)}"),
               f"GenAI agent {agent} ({job}) p95 latency above {_g(slow.threshold)}s ({seconds})",
               f"95th percentile duration of agent {agent}'s invocations in service {job} over "
               f"the last {slow.window} is {seconds} (threshold {_g(slow.threshold)}s) for "
               f"{human(slow.for_)}."),
    ]


def alert_groups() -> dict[str, list[dict]]:
    return {"cugar-agent-alerts": agent_alert_rules(),
            "cugar-pipeline-alerts": pipeline_alert_rules(),
            "cugar-alert-delivery-alerts": alert_delivery_rules(),
            "cugar-llm-alerts": llm_alert_rules(),
            "cugar-genai-alerts": genai_alert_rules()}


# --- the promtool counting test's rules ---------------------------------------------------------

# monitoring/prometheus/tests/counting_test.yml evaluates the counting over a window other than
# the rules' 5m, per series and fleet-wide, as the API does for caller-chosen windows.
TEST_WINDOW = "10m"


def counting_test_groups() -> list[dict]:
    x, w = EXECUTIONS.prometheus_name, TEST_WINDOW
    return [{"name": "counting", "rules": [
        {"record": f"series:{x}:increase{w}", "expr": q.increase(q.select(EXECUTIONS), w)},
        {"record": f"fleet:{x}:increase{w}", "expr": q.count(EXECUTIONS, w)},
    ]}]
