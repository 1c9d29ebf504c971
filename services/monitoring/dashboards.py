"""The Grafana dashboards (golden signals, pipeline health, LLM calls, GenAI agents), built with Grafana's foundation SDK: every panel's query comes from
queries.py and every alert-related colour from tunables.py (no pasted PromQL).
`python -m services.monitoring` writes them to monitoring/grafana/dashboards/.

Needs grafana-foundation-sdk (a test dependency; the generated JSON is committed).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from grafana_foundation_sdk.builders import bargauge, common as common_b, dashboard as d
from grafana_foundation_sdk.builders import gauge, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard as dm
from grafana_foundation_sdk.models.prometheus import QueryEditorMode

from otel.catalogue import (
    APPROVAL_WAIT, BUDGET_UTILIZATION, BUDGET_WARNING_RATIO, DOMAIN_USAGE, EXECUTION_DURATION,
    EXECUTIONS, GEN_AI_MODEL, GENAI_AGENT_DURATION, GENAI_AGENT_ERRORS, GENAI_AGENT_INVOCATIONS,
    GENAI_AGENT_NAME, GENAI_INFERENCE_CALLS, GENAI_INFERENCE_DURATION, GENAI_INFERENCE_ERRORS,
    GENAI_INPUT_TOKENS, GENAI_MODEL, GENAI_OUTPUT_TOKENS, GENAI_TOOL_CALLS, GENAI_TOOL_DURATION,
    GENAI_TOOL_ERRORS, GENAI_TOOL_NAME, LATENCY_PERCENTILES, LLM_COST, LLM_COST_UNPRICED,
    GEN_AI_TOKEN_TYPE, LLM_OPERATION_DURATION, LLM_TIME_TO_FIRST_CHUNK, LLM_TOKENS, OUTCOME,
    PROFILE as PROFILE_LABEL, TELEMETRY_DROPPED, TOOL_CALLS, label_name,
)

from . import collector_guard
from . import queries as q
from . import tunables as t
from .rules import MS_PER_S
from .tunables import ALERTS, GOLDEN_WINDOW

DATASOURCE = common.DataSourceRef(type_val="prometheus", uid="cugar-prometheus")
RUNBOOK_BASE = "http://localhost:8000/runbooks"  # the API serves docs/runbooks.md there
RANGE = "$__range"  # the dashboard's picked time range: counting panels
RATE = "$__rate_interval"  # per point of a time series
PROFILE = [q.like("profile", "$profile")]
DOMAIN = [q.like("domain", "$domain")]


# --- building blocks --------------------------------------------------------------------------


def _target(expr: str, legend: str = "__auto", instant: bool = False,
            ref: str = "A", exemplar: bool = False) -> prometheus.Dataquery:
    query = (prometheus.Dataquery().expr(q.one_line(expr)).ref_id(ref).legend_format(legend)
             .editor_mode(QueryEditorMode.CODE).datasource(DATASOURCE))
    if exemplar:  # the buckets' exemplars, each linking to its trace (the datasource's
        query = query.exemplar(True)  # exemplarTraceIdDestinations)
    return query.instant() if instant else query.range()


def _targets(*exprs: tuple[str, str], instant: bool = False,
             exemplar: bool = False) -> list[prometheus.Dataquery]:
    return [_target(expr, legend, instant, chr(ord("A") + i), exemplar)
            for i, (expr, legend) in enumerate(exprs)]


def _steps(*steps: tuple[str, float | None]) -> d.ThresholdsConfig:
    return d.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(color=color, value=value) for color, value in steps])


def _runbook(alert: str) -> list[d.DashboardLink]:
    return [d.DashboardLink("Runbook").type(dm.DashboardLinkType.LINK)
            .url("${runbook_base}#" + alert.lower()).icon("doc")
            .tooltip("What this alert means and what to do").target_blank(True)]


def _last() -> common_b.ReduceDataOptions:
    return common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("")


def _common(panel, title: str, description: str, targets, unit: str, runbook: str | None):
    panel = (panel.title(title).description(description).datasource(DATASOURCE)
             .targets(targets).unit(unit))
    return panel.links(_runbook(runbook)) if runbook else panel


def _stat(title, description, targets, unit, steps, runbook=None, decimals=0,
          ratio=False, color_mode=common.BigValueColorMode.VALUE) -> stat.Panel:
    panel = _common(stat.Panel(), title, description, targets, unit, runbook)
    panel = (panel.decimals(decimals).thresholds(_steps(*steps))
             .color_scheme(d.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
             .reduce_options(_last()).color_mode(color_mode)
             .graph_mode(common.BigValueGraphMode.AREA))
    return panel.min(0).max(1) if ratio else panel


def _series(title, description, targets, unit, runbook=None, alert_line=False,
            min_val: float | None = 0, max_val: float | None = None) -> timeseries.Panel:
    panel = _common(timeseries.Panel(), title, description, targets, unit, runbook)
    panel = (panel.color_scheme(d.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
             .draw_style(common.GraphDrawStyle.LINE).line_width(2).fill_opacity(10)
             .show_points(common.VisibilityMode.NEVER)
             .legend(common_b.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                     .placement(common.LegendPlacement.BOTTOM).show_legend(True))
             .tooltip(common_b.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                      .sort(common.SortOrder.NONE)))
    if alert_line:  # any non-zero value is a problem: draw the threshold as a red line
        panel = (panel.thresholds(_steps(("green", None), ("red", 0.001)))
                 .thresholds_style(common_b.GraphThresholdsStyleConfig()
                                   .mode(common.GraphThresholdsStyleMode.LINE)))
    if min_val is not None:
        panel = panel.min(min_val)
    return panel.max(max_val) if max_val is not None else panel


def _bars(title, description, targets, unit, runbook=None, steps=(("blue", None),),
          max_val: float | None = None) -> bargauge.Panel:
    panel = _common(bargauge.Panel(), title, description, targets, unit, runbook)
    panel = (panel.min(0).thresholds(_steps(*steps))
             .color_scheme(d.FieldColor().mode(dm.FieldColorModeId.CONTINUOUS_BL_PU))
             .reduce_options(_last()).orientation(common.VizOrientation.HORIZONTAL)
             .display_mode(common.BarGaugeDisplayMode.GRADIENT).show_unfilled(True)
             .value_mode(common.BarGaugeValueMode.COLOR))
    return panel.max(max_val) if max_val is not None else panel


class _Layout:
    """Rows of panels on Grafana's 24-column grid, top to bottom; ids in order."""

    def __init__(self, board: d.Dashboard) -> None:
        self.board, self.y, self.id = board, 0, 0

    def _next_id(self) -> int:
        self.id += 1
        return self.id

    def row(self, title: str, height: int, panels: Sequence[tuple[int, object]]) -> None:
        self.board.with_row(d.Row(title).id(self._next_id())
                            .grid_pos(dm.GridPos(h=1, w=24, x=0, y=self.y)))
        self.y += 1
        x = 0
        for width, panel in panels:
            self.board.with_panel(panel.id(self._next_id())
                                  .grid_pos(dm.GridPos(h=height, w=width, x=x, y=self.y)))
            x += width
        self.y += height


def _board(uid: str, title: str, description: str, tags: list[str],
           links: list[d.DashboardLink], variables: Sequence[object] = ()) -> d.Dashboard:
    board = (d.Dashboard(title).uid(uid).description(description).tags(tags)
             .timezone("browser").editable().tooltip(dm.DashboardCursorSync.CROSSHAIR)
             .refresh("30s").time("now-1h", "now").version(1)
             .timepicker(d.TimePicker().refresh_intervals(["10s", "30s", "1m", "5m", "15m"]))
             .annotation(d.AnnotationQuery().name("Annotations & Alerts").built_in(1)
                         .datasource(common.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
                         .enable(True).hide(True).icon_color("rgba(0, 211, 255, 1)")
                         .type("dashboard")))
    for link in links:
        board = board.link(link)
    for variable in [*variables, d.ConstantVariable("runbook_base").label("Runbooks")
                     .value(RUNBOOK_BASE)]:
        board = board.with_variable(variable)
    return board


def _label_variable(name: str, label: str, metric, suffix: str = "",
                    label_name: str | None = None) -> d.QueryVariable:
    """A multi-value variable `name` listing the values of `label_name` (default: `name`) on
    series `metric` + `suffix` (a histogram's `_count`)."""
    return (d.QueryVariable(name).label(label).datasource(DATASOURCE)
            .query(f"label_values({metric.series(suffix)}, {label_name or name})")
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).multi(True).include_all(True)
            .all_value(".*").sort(dm.VariableSort.ALPHABETICAL_ASC))


def _dashboard_link(title: str, tag: str) -> d.DashboardLink:
    return (d.DashboardLink(title).type(dm.DashboardLinkType.DASHBOARDS).tags([tag])
            .icon("dashboard").keep_time(True))


def _runbooks_link() -> d.DashboardLink:
    return (d.DashboardLink("Runbooks").type(dm.DashboardLinkType.LINK).url("${runbook_base}")
            .icon("doc").tooltip("Alert runbooks").target_blank(True))


# --- the dashboards ---------------------------------------------------------------------------


def golden_signals() -> d.Dashboard:
    w = GOLDEN_WINDOW
    low, crit = ALERTS["LowSuccessRate"].threshold, ALERTS["CriticalSuccessRate"].threshold
    p95 = ALERTS["HighLatencyP95"].threshold
    board = _board(
        "cugar-golden-signals", "CUGAr golden signals",
        "Fleet-wide golden signals of the CUGAr agents (executions, latency, budget, approvals, "
        "tools, domains).", ["cugar", "cugar-golden-signals"],
        [_dashboard_link("Pipeline health", "cugar-pipeline"), _runbooks_link()],
        [_label_variable("profile", "Profile", EXECUTIONS),
         _label_variable("domain", "Domain", DOMAIN_USAGE)])
    layout = _Layout(board)
    layout.row("Golden signals", 5, [
        (6, _stat("Success rate",
                  f"Share of executions that succeeded over the last {w}, fleet-wide (no data "
                  "when idle: an idle fleet has no success rate).",
                  [_target(q.share(EXECUTIONS, OUTCOME, "success", w, PROFILE))], "percentunit",
                  [("red", None), ("yellow", crit), ("green", low)], "LowSuccessRate", 1,
                  ratio=True)),
        (6, _stat("Error rate", f"Share of executions that failed over the last {w}, fleet-wide.",
                  [_target(q.share(EXECUTIONS, OUTCOME, "failure", w, PROFILE))], "percentunit",
                  [("green", None), ("yellow", t.ERROR_RATE_WARN),
                   ("red", ALERTS["HighErrorRate"].threshold)], "HighErrorRate", 1, ratio=True)),
        (6, _stat("Latency p95",
                  f"95th percentile of execution duration over the last {w} (from the duration "
                  "histogram).",
                  [_target(q.quantile(LATENCY_PERCENTILES["p95"], EXECUTION_DURATION, w, PROFILE,
                                      MS_PER_S))], "ms",
                  [("green", None), ("yellow", t.LATENCY_P95_WARN_MS), ("red", p95)],
                  "HighLatencyP95")),
        (6, _stat("Total executions",
                  "Executions finished in the dashboard's time range (counted inside the range, "
                  "not a lifetime counter).",
                  [_target(q.count(EXECUTIONS, RANGE, matchers=PROFILE), instant=True)], "short",
                  [("blue", None)])),
    ])
    layout.row("Trends", 8, [
        (12, _series("Success / error rate over time", "Execution outcome shares per rate interval.",
                     _targets((q.share(EXECUTIONS, OUTCOME, "success", RATE, PROFILE), "success rate"),
                              (q.share(EXECUTIONS, OUTCOME, "failure", RATE, PROFILE), "error rate")),
                     "percentunit", "LowSuccessRate", max_val=1)),
        # In seconds, the histogram's unit: its exemplars (one execution each, a link to its
        # trace in Jaeger) are drawn at their own value on the same axis.
        (12, _series("Latency percentiles (p50 / p95 / p99)",
                     "Execution duration percentiles per rate interval. The dots are exemplars: "
                     "single executions, each linking to its trace in Jaeger.",
                     _targets(*[(q.quantile(p, EXECUTION_DURATION, RATE, PROFILE), name)
                                for name, p in LATENCY_PERCENTILES.items()], exemplar=True),
                     "s", "HighLatencyP95")),
    ])
    layout.row("Operations", 7, [
        (8, gauge.Panel().title("Budget utilization")
            .description(f"Mean budget used / ceiling per execution over the last {w} (0-100%; "
                         f"the budget warning is at {BUDGET_WARNING_RATIO:.0%}).")
            .datasource(DATASOURCE).targets([_target(q.mean(BUDGET_UTILIZATION, w, PROFILE))])
            .unit("percentunit").min(0).max(1).decimals(1)
            .thresholds(_steps(("green", None), ("yellow", BUDGET_WARNING_RATIO), ("red", 1.0)))
            .color_scheme(d.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
            .reduce_options(_last()).show_threshold_labels(False).show_threshold_markers(True)
            .links(_runbook("FrequentBudgetExceeded"))),
        (8, _stat("Approval wait time",
                  "Mean time from approval request to decision (or timeout) over the last "
                  f"{w}, in milliseconds.",
                  [_target(q.mean(APPROVAL_WAIT, w, factor=MS_PER_S))], "ms",
                  [("green", None), ("yellow", t.APPROVAL_WAIT_WARN_MS),
                   ("red", t.APPROVAL_WAIT_CRITICAL_MS)], "ApprovalTimeouts")),
        (8, _stat("Tool success rate", f"Share of tool calls that succeeded over the last {w}.",
                  [_target(q.share(TOOL_CALLS, OUTCOME, "success", w, DOMAIN))], "percentunit",
                  [("red", None), ("yellow", t.TOOL_SUCCESS_WARN), ("green", t.TOOL_SUCCESS_OK)],
                  "HighToolErrorRate", 1, ratio=True)),
    ])
    layout.row("Analytics", 8, [
        (24, _bars("Domain usage", "Tool calls per agent domain in the dashboard's time range.",
                   [_target(q.count(DOMAIN_USAGE, RANGE, ("domain",), matchers=DOMAIN),
                            "{{domain}}", instant=True)], "short", "DomainErrors")),
    ])
    return board


def _per_signal(names: dict[str, str], by: Sequence[str] = ()) -> list[tuple[str, str]]:
    legend = {"metrics": "metric points", "traces": "spans"}
    prefix = "".join(f"{{{{{label}}}}} " for label in by)
    return [(q.rate(names[signal], RATE, by, t.COLLECTOR_SELECTOR), prefix + legend[signal])
            for signal in ("metrics", "traces")]


def _or_zero_while_sending(failed: tuple[str, str], sent: tuple[str, str]) -> tuple[str, str]:
    # Exporters that send without failures have no failure series yet: show them at 0.
    return f"{failed[0]}\nor\n{sent[0]} * 0", failed[1]


def pipeline_health() -> d.Dashboard:
    board = _board(
        "cugar-pipeline-health", "CUGAr pipeline health",
        "Health of the telemetry pipeline: what senders dropped, collector intake and export, "
        "processor drops, queue fill, scrape health.", ["cugar", "cugar-pipeline"],
        [_dashboard_link("Golden signals", "cugar-golden-signals"), _runbooks_link()])
    by_exporter = ("exporter",)
    by_reason = ("signal", "reason")
    layout = _Layout(board)
    dropped = q.select(TELEMETRY_DROPPED)
    layout.row("Senders (agents' own export queues)", 8, [
        (16, _series("Dropped by senders per second",
                     "Items our library discarded before the collector had them (tel.stats()): "
                     "export queue full while the collector was down or slow, batches the "
                     "exporter gave up on, spans left at shutdown. 0 while nothing is lost.",
                     _targets((f"sum by ({', '.join(by_reason)}) (rate({dropped}[{RATE}]))",
                               "{{signal}} {{reason}}")), "short", alert_line=True)),
        (8, _stat("Dropped by senders in range",
                  "Items discarded by senders in the dashboard's time range (any reason).",
                  [_target(q.or_zero(q.count(TELEMETRY_DROPPED, RANGE)), "dropped",
                           instant=True)], "short", [("green", None), ("red", 1)])),
    ])
    layout.row("Collector intake", 8, [
        (12, _series("Received (accepted) per second",
                     "Data points and spans the collector's receivers accepted.",
                     _targets(*_per_signal(q.RECEIVER_ACCEPTED)), "short")),
        (12, _series("Refused per second",
                     "Data the receivers refused (memory_limiter back-pressure); senders retry "
                     "or drop.", _targets(*_per_signal(q.RECEIVER_REFUSED)), "short",
                     "CollectorRefusingData", alert_line=True)),
    ])
    layout.row("Collector export", 8, [
        (8, _series("Sent per second", "Data points and spans the exporters delivered.",
                    _targets(*_per_signal(q.EXPORTER_SENT, by_exporter)), "short")),
        (8, _series("Failed to send per second",
                    "Data the exporters gave up on after retries (0 while the exporter is "
                    "sending without failures; no data when nothing is sent).",
                    _targets(*[_or_zero_while_sending(f, s) for f, s in
                               zip(_per_signal(q.EXPORTER_SEND_FAILED, by_exporter),
                                   _per_signal(q.EXPORTER_SENT, by_exporter))]),
                    "short", "CollectorExportFailing", alert_line=True)),
        (8, _series("Dropped in processors per second",
                    "Items that entered a processor and did not leave it (filtered or dropped).",
                    _targets((f"{q.rate(q.PROCESSOR_INCOMING, RATE, ('processor',), t.COLLECTOR_SELECTOR)}"
                              f"\n-\n{q.rate(q.PROCESSOR_OUTGOING, RATE, ('processor',), t.COLLECTOR_SELECTOR)}",
                              "{{processor}}")),
                    "short", alert_line=True, min_val=None)),
    ])
    queue = ALERTS["CollectorExporterQueueFull"].threshold
    layout.row("Queues and scraping", 8, [
        (8, _bars("Exporter queue fill",
                  f"Sending-queue size / capacity per exporter (alert above {queue:.0%}).",
                  [_target(q.queue_fill(by_exporter), "{{exporter}}", instant=True)],
                  "percentunit", "CollectorExporterQueueFull",
                  steps=(("green", None), ("yellow", 0.6), ("red", queue)), max_val=1)),
        (8, _stat("Scrape targets up", "1 = Prometheus' last scrape of the target succeeded.",
                  [_target(f"min by (job) ({q.select_name(q.UP, t.SCRAPE_SELECTOR)})", "{{job}}",
                           instant=True)], "short", [("red", None), ("green", 1)],
                  "ScrapeTargetDown", color_mode=common.BigValueColorMode.BACKGROUND)),
        (8, _series("Scrape duration", "How long Prometheus takes to scrape each job.",
                    _targets((f"max by (job) ({q.select_name(q.SCRAPE_DURATION, t.SCRAPE_SELECTOR)})",
                              "{{job}}")), "s")),
    ])
    by_label = ("service", "metric", "attribute")
    guard = collector_guard.NAME
    layout.row("Cardinality guard", 8, [
        (24, _series("Label values folded into other per second",
                     "Points of catalogue metrics whose label value the collector's cardinality "
                     "guard replaced with other (outside its set, or beyond the per-service "
                     "bound) or removed (not in the catalogue), by sending service. Totals stay "
                     "exact; the breakdown by that label is partial.",
                     _targets((q.rate(q.CARDINALITY_OVERFLOW, RATE, by_label, t.COLLECTOR_SELECTOR)
                               # 0 while the guard sees points and has folded none (its counter
                               # exists only once it has counted something).
                               + "\nor\n" + q.rate(q.PROCESSOR_INCOMING, RATE, (),
                                                    f'{t.COLLECTOR_SELECTOR}, processor="{guard}"')
                               + " * 0", "{{service}} {{metric}} {{attribute}}")),
                     "short", "CollectorCardinalityOverflow", alert_line=True)),
    ])
    layout.row("Down or stale", 8, [
        (6, _stat("Scrape targets down for",
                  "0 while Prometheus' last scrape of the job succeeded; otherwise the seconds "
                  "since its last good scrape: down since then.",
                  [_target(f"max by (job) ({q.down_seconds(t.SCRAPE_SELECTOR)})", "{{job}}",
                           instant=True)], "s", [("green", None), ("red", 0.5)],
                  "ScrapeTargetDown", color_mode=common.BigValueColorMode.BACKGROUND)),
        (6, _stat("Last good scrape (down since)",
                  "When Prometheus last scraped each job successfully: now for a healthy "
                  "target, the start of the outage for one that is down (to the evaluation "
                  "step; /dashboard gives it to the scrape).",
                  [_target(f"1000 * max by (job) ({q.last_good_scrape(t.SCRAPE_SELECTOR)})",
                           "{{job}}", instant=True)], "dateTimeAsIso", [("blue", None)])),
        (6, _bars("Agent data age",
                  "Seconds since each agent process's newest sample reached Prometheus. A few "
                  f"export intervals or more ({t.STALE_EXPORTS} is /dashboard's limit): its numbers "
                  "are held up by the pipeline, or the process stopped sending.",
                  [_target(q.age(q.last_sample(EXECUTIONS)), "{{job}} {{instance}}",
                           instant=True)], "s",
                  steps=(("green", None), ("yellow", 10), ("red", 30)))),
        (6, _stat("Agent data: newest sample",
                  "When each agent process's newest sample was taken: for a stale process, "
                  "since when its data is missing.",
                  [_target(f"1000 * {q.last_sample(EXECUTIONS)}", "{{job}} {{instance}}",
                           instant=True)], "dateTimeAsIso", [("blue", None)])),
    ])
    return board


# --- LLM calls (our library's GenAI client metrics and cost) ---------------------------------

MODEL_LABEL = label_name(GEN_AI_MODEL)
MODEL = [q.like(MODEL_LABEL, "$model")]
PER_MINUTE = 60


def _per_minute(spec, by: Sequence[str] = (), suffix: str = "", matchers=()) -> str:
    return q.scaled(q.per_second(spec, RATE, by, suffix, matchers), PER_MINUTE)


def llm_calls() -> d.Dashboard:
    """A board of its own, not a row on golden signals: keyed by model and profile (labels the
    golden-signals metrics lack), and the golden-signals board keeps its known layout."""
    w = GOLDEN_WINDOW
    errors = ALERTS["HighLLMErrorRate"].threshold
    failed = ['error_type!=""']
    calls = LLM_OPERATION_DURATION
    board = _board(
        "cugar-llm", "CUGAr LLM calls",
        "LLM calls of agents using the CUGAr library (and of any sender of the GenAI client "
        "metrics): tokens and cost by model and profile, latency with exemplars, errors, "
        "unpriced calls.", ["cugar", "cugar-llm"],
        [_dashboard_link("Golden signals", "cugar-golden-signals"),
         _dashboard_link("GenAI agents", "cugar-genai"), _runbooks_link()],
        [_label_variable("model", "Model", calls, "_count", MODEL_LABEL),
         _label_variable("profile", "Profile", LLM_COST)])
    cost_filter = [*MODEL, *PROFILE]
    layout = _Layout(board)
    layout.row("LLM calls", 5, [
        (5, _stat("LLM calls", "LLM calls finished in the dashboard's time range.",
                  [_target(q.count(calls, RANGE, suffix="_count", matchers=MODEL), instant=True)],
                  "short", [("blue", None)])),
        (5, _stat("Cost", "What the priced LLM calls cost in the dashboard's time range (USD, "
                  "from tokens and the price table).",
                  [_target(q.count(LLM_COST, RANGE, matchers=cost_filter), instant=True)],
                  "currencyUSD", [("blue", None)], "LLMCostOverBudget", decimals=2)),
        (5, _stat("Tokens", "Input and output tokens of the LLM calls in the dashboard's time "
                  "range.",
                  [_target(q.count(LLM_TOKENS, RANGE, matchers=cost_filter), instant=True)],
                  "short", [("blue", None)], "LLMTokenSpike")),
        (5, _stat("Error rate", f"Share of LLM calls that failed over the last {w} (rate "
                  "limits, timeouts, provider errors).",
                  [_target(q.fraction(calls, failed, w, MODEL, "_count"))], "percentunit",
                  [("green", None), ("yellow", errors / 2), ("red", errors)], "HighLLMErrorRate",
                  1, ratio=True)),
        (4, _stat("Unpriced calls", "LLM calls in the dashboard's time range whose model has "
                  "no price: counted, not in the cost (add the model to CUGAR_LLM_PRICES).",
                  [_target(q.or_zero(q.count(LLM_COST_UNPRICED, RANGE, matchers=MODEL)),
                           instant=True)], "short", [("green", None), ("yellow", 1)])),
    ])
    token_type = label_name(GEN_AI_TOKEN_TYPE)
    layout.row("Tokens and cost per minute", 8, [
        (6, _series("Tokens per minute by model", "Input and output tokens per minute, by "
                    "requested model.",
                    _targets((_per_minute(LLM_TOKENS, (MODEL_LABEL, token_type),
                                          matchers=cost_filter),
                              "{{gen_ai_request_model}} {{gen_ai_token_type}}")),
                    "short", "LLMTokenSpike")),
        (6, _series("Tokens per minute by profile", "Input and output tokens per minute, by "
                    "the profile of the execution that made the calls.",
                    _targets((_per_minute(LLM_TOKENS, (PROFILE_LABEL, token_type),
                                          matchers=cost_filter),
                              "{{profile}} {{gen_ai_token_type}}")), "short", "LLMTokenSpike")),
        (6, _series("Cost per minute by model", "USD per minute of the priced LLM calls, by "
                    "requested model.",
                    _targets((_per_minute(LLM_COST, (MODEL_LABEL,), matchers=cost_filter),
                              "{{gen_ai_request_model}}")), "currencyUSD", "LLMCostOverBudget")),
        (6, _series("Cost per minute by profile", "USD per minute of the priced LLM calls, by "
                    "the profile of the execution that made them (budgets per profile: "
                    "LLMCostOverBudget).",
                    _targets((_per_minute(LLM_COST, (PROFILE_LABEL,), matchers=cost_filter),
                              "{{profile}}")), "currencyUSD", "LLMCostOverBudget")),
    ])
    # Seconds, the histograms' unit: their exemplars (one LLM call each, linking to its
    # trace in Jaeger) sit on the same axis.
    layout.row("Latency", 8, [
        (12, _series("LLM call latency (p50 / p95 / p99)",
                     "gen_ai.client.operation.duration percentiles per rate interval. The dots "
                     "are exemplars: single calls, each linking to its trace in Jaeger.",
                     _targets(*[(q.quantile(p, calls, RATE, MODEL), name)
                                for name, p in LATENCY_PERCENTILES.items()], exemplar=True),
                     "s")),
        (6, _series("Latency p95 by model", "95th percentile LLM call duration by model.",
                    _targets((q.quantile(LATENCY_PERCENTILES["p95"], calls, RATE, MODEL,
                                         by=(MODEL_LABEL,)), "{{gen_ai_request_model}}"),
                             exemplar=True), "s")),
        (6, _series("Time to first chunk p95 by model",
                    "95th percentile time from a streaming request to its first chunk, by model.",
                    _targets((q.quantile(LATENCY_PERCENTILES["p95"], LLM_TIME_TO_FIRST_CHUNK,
                                         RATE, MODEL, by=(MODEL_LABEL,)),
                              "{{gen_ai_request_model}}"), exemplar=True), "s")),
    ])
    traffic = q.per_second(calls, RATE, suffix="_count", matchers=MODEL)
    layout.row("Errors and unpriced calls", 8, [
        (8, _series("LLM error rate", "Share of LLM calls that failed, per rate interval.",
                    _targets((q.fraction(calls, failed, RATE, MODEL, "_count"), "error rate")),
                    "percentunit", "HighLLMErrorRate", max_val=1)),
        (8, _series("Errors per minute by error.type",
                    "Failed LLM calls per minute by error.type (429 = rate limited); 0 while "
                    "calls succeed.",
                    _targets((q.or_zero_while(
                        _per_minute(calls, ("error_type",), "_count", [*MODEL, *failed]),
                        traffic), "{{error_type}}")), "short", "HighLLMErrorRate")),
        (8, _series("Unpriced calls per minute by model",
                    "LLM calls per minute whose model has no price (counted, never guessed; "
                    "add it to CUGAR_LLM_PRICES); 0 while every call is priced.",
                    _targets((q.or_zero_while(
                        _per_minute(LLM_COST_UNPRICED, (MODEL_LABEL,), matchers=MODEL), traffic),
                        "{{gen_ai_request_model}}")), "short")),
    ])
    return board


# --- GenAI agents of any framework (the collector's span-derived cugar.genai.* metrics) -------

AGENT_LABEL, TOOL_LABEL = label_name(GENAI_AGENT_NAME), label_name(GENAI_TOOL_NAME)
GENAI_MODEL_LABEL = label_name(GENAI_MODEL)
# `$agent` filters the tool and model series too: a framework that names no agent on those
# spans (the OpenAI Agents instrumentation) shows them under "All" and its service.
GENAI = [q.like("job", "$service"), q.like(AGENT_LABEL, "$agent")]


def _calls_errors_latency(noun: str, by_word: str, calls, errors, duration, label: str,
                          runbook: str | None = None) -> tuple[timeseries.Panel, ...]:
    """Calls per minute, errors per minute (0 for those called without errors) and p95
    latency of a GenAI operation (tool or model calls), by service and `label`."""
    by = ("job", label)
    legend = f"{{{{job}}}} {{{{{label}}}}}"
    per_minute = _per_minute(calls, by, matchers=GENAI)
    return (
        _series(f"{noun} calls per minute by {by_word}", f"{noun} calls per minute.",
                _targets((per_minute, legend)), "short"),
        _series(f"{noun} errors per minute by {by_word}",
                f"Failed {noun.lower()} calls per minute (0 for those called without errors).",
                _targets((q.or_zero_by(_per_minute(errors, by, matchers=GENAI), per_minute),
                          legend)), "short", runbook),
        _series(f"{noun} latency p95 by {by_word}",
                f"95th percentile {noun.lower()} call duration.",
                _targets((q.quantile(LATENCY_PERCENTILES["p95"], duration, RATE, GENAI, by=by),
                          legend)), "s"),
    )


def genai_agents() -> d.Dashboard:
    w = GOLDEN_WINDOW
    agents, agent_errors = GENAI_AGENT_INVOCATIONS.spec, GENAI_AGENT_ERRORS.spec
    tools, tool_errors = GENAI_TOOL_CALLS.spec, GENAI_TOOL_ERRORS.spec
    models, model_errors = GENAI_INFERENCE_CALLS.spec, GENAI_INFERENCE_ERRORS.spec
    agent_error_rate = ALERTS["GenAIAgentErrorRateHigh"].threshold
    tool_error_rate = ALERTS["GenAIToolErrorRateHigh"].threshold
    latency = ALERTS["GenAIAgentLatencyP95High"].threshold
    p95 = LATENCY_PERCENTILES["p95"]
    board = _board(
        "cugar-genai-agents", "CUGAr GenAI agents",
        "Agents of any framework (PydanticAI, the OpenAI Agents SDK, any GenAI-instrumented "
        "sender): invocations, errors, latency, tool calls and model calls by agent name, "
        "from their spans (the collector's signal_to_metrics/genai connector).",
        ["cugar", "cugar-genai"],
        [_dashboard_link("LLM calls", "cugar-llm"),
         _dashboard_link("Golden signals", "cugar-golden-signals"), _runbooks_link()],
        [_label_variable("service", "Service", agents, label_name="job"),
         _label_variable("agent", "Agent", agents, label_name=AGENT_LABEL)])
    by_agent = ("job", AGENT_LABEL)
    agent_legend = "{{job}} {{gen_ai_agent_name}}"
    layout = _Layout(board)
    layout.row("Agents", 5, [
        (5, _stat("Invocations", "Agent invocations in the dashboard's time range.",
                  [_target(q.count(agents, RANGE, matchers=GENAI), instant=True)], "short",
                  [("blue", None)])),
        (5, _stat("Error rate", f"Share of agent invocations that failed over the last {w}.",
                  [_target(q.ratio(q.or_zero(q.count(agent_errors, w, matchers=GENAI)),
                                   q.count(agents, w, matchers=GENAI)))], "percentunit",
                  [("green", None), ("yellow", agent_error_rate / 2), ("red", agent_error_rate)],
                  "GenAIAgentErrorRateHigh", 1, ratio=True)),
        (5, _stat("Latency p95", f"95th percentile agent invocation duration over the last {w}.",
                  [_target(q.quantile(p95, GENAI_AGENT_DURATION.spec, w, GENAI))], "s",
                  [("green", None), ("yellow", latency / 2), ("red", latency)],
                  "GenAIAgentLatencyP95High", decimals=2)),
        (5, _stat("Tool calls", "Tool executions in the dashboard's time range.",
                  [_target(q.count(tools, RANGE, matchers=GENAI), instant=True)], "short",
                  [("blue", None)])),
        (4, _stat("Model calls", "Model (inference) calls in the dashboard's time range.",
                  [_target(q.count(models, RANGE, matchers=GENAI), instant=True)], "short",
                  [("blue", None)])),
    ])
    layout.row("Invocations", 8, [
        (8, _series("Invocations per minute by agent", "Agent invocations per minute.",
                    _targets((_per_minute(agents, by_agent, matchers=GENAI), agent_legend)),
                    "short")),
        (8, _series("Error rate by agent", "Share of each agent's invocations that failed, per "
                    "rate interval (0 while it runs without failures).",
                    _targets((q.ratio_by(q.count(agent_errors, RATE, by_agent, matchers=GENAI),
                                         q.count(agents, RATE, by_agent, matchers=GENAI)),
                              agent_legend)), "percentunit", "GenAIAgentErrorRateHigh",
                    max_val=1)),
        (8, _series("Latency p95 by agent", "95th percentile invocation duration per agent.",
                    _targets((q.quantile(p95, GENAI_AGENT_DURATION.spec, RATE, GENAI,
                                         by=by_agent), agent_legend)), "s",
                    "GenAIAgentLatencyP95High")),
    ])
    tool_calls, tool_errors_, tool_latency = _calls_errors_latency(
        "Tool", "tool", tools, tool_errors, GENAI_TOOL_DURATION.spec, TOOL_LABEL,
        "GenAIToolErrorRateHigh")
    layout.row("Tools", 8, [(8, tool_calls), (8, tool_errors_), (8, tool_latency)])
    by_model = ("job", GENAI_MODEL_LABEL)
    model_legend = "{{job}} {{gen_ai_request_model}}"
    model_calls, model_errors_, model_latency = _calls_errors_latency(
        "Model", "model", models, model_errors, GENAI_INFERENCE_DURATION.spec, GENAI_MODEL_LABEL)
    layout.row("Models", 8, [
        (6, model_calls),
        (6, _series("Tokens per minute by model", "Input and output tokens per minute.",
                    _targets((_per_minute(GENAI_INPUT_TOKENS.spec, by_model, matchers=GENAI),
                              model_legend + " input"),
                             (_per_minute(GENAI_OUTPUT_TOKENS.spec, by_model, matchers=GENAI),
                              model_legend + " output")), "short")),
        (6, model_errors_), (6, model_latency),
    ])
    return board


def to_json(board: d.Dashboard) -> dict:
    return json.loads(json.dumps(board.build(), cls=JSONEncoder))


DASHBOARDS: dict[str, Callable[[], dict]] = {
    "cugar-golden-signals": lambda: to_json(golden_signals()),
    "cugar-pipeline-health": lambda: to_json(pipeline_health()),
    "cugar-llm": lambda: to_json(llm_calls()),
    "cugar-genai-agents": lambda: to_json(genai_agents()),
}
