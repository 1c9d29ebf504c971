"""Every number an operator may want to turn, in one table: alert thresholds, `for:` durations,
severities, families, windows, job selectors and the runbook link pattern.

The rules (rules.py), their descriptions, the dashboards (dashboards.py), the runbooks'
headings and the tests all read these values; change one here and run
`python -m services.monitoring` to rewrite the generated files.
"""

from __future__ import annotations

from dataclasses import dataclass

# Windows. Golden signals are fleet-wide over GOLDEN_WINDOW; the budget alert counts over
# BUDGET_WINDOW. Rates of the collector's own counters are taken over RATE_WINDOW.
GOLDEN_WINDOW = "5m"
BUDGET_WINDOW = "1h"
RATE_WINDOW = "5m"

# Freshness (the API's /dashboard status): an agent process whose newest sample is older than
# STALE_EXPORTS of its own export intervals (measured from its samples) plus STALE_SLACK_S is
# stale; its data is missing when the collector was down or failing when it was due.
STALE_EXPORTS = 3
STALE_SLACK_S = 2.0

# Job selectors (PromQL label matchers, without braces; "" selects every job).
# CUGAr series are pushed by the collector into Prometheus' OTLP receiver: `job` is the
# sender's service.name, so any sender of the catalogue's metrics counts.
CUGAR_SELECTOR = ""
# The collector's own telemetry, scraped by Prometheus (monitoring/prometheus/prometheus.yml).
COLLECTOR_TELEMETRY_JOB = "otel-collector-telemetry"
COLLECTOR_SELECTOR = f'job="{COLLECTOR_TELEMETRY_JOB}"'
# Every scrape target (`up` exists only for scraped jobs).
SCRAPE_SELECTOR = ""
# Alert delivery: Alertmanager's own metrics and Prometheus' notifier metrics, scraped under
# these jobs (monitoring/prometheus/prometheus.yml).
ALERTMANAGER_JOB = "alertmanager"
ALERTMANAGER_SELECTOR = f'job="{ALERTMANAGER_JOB}"'
PROMETHEUS_JOB = "prometheus"
PROMETHEUS_SELECTOR = f'job="{PROMETHEUS_JOB}"'

# Where an alert's runbook lives: the anchor is the alert name in lower case.
RUNBOOK_URL = "docs/runbooks.md#{anchor}"

SEVERITIES = ("critical", "warning", "info")


@dataclass(frozen=True)
class Alert:
    """The tunables of one alert. `threshold` is in the unit of the signal it compares
    (a ratio, milliseconds, a count in `window`)."""

    name: str
    severity: str
    family: str
    threshold: float | None = None
    for_: str | None = None  # None: fires on the first evaluation that matches
    window: str = GOLDEN_WINDOW

    @property
    def runbook_url(self) -> str:
        return RUNBOOK_URL.format(anchor=self.name.lower())


AGENT_ALERTS: tuple[Alert, ...] = (
    Alert("LowSuccessRate", "warning", "success_rate", threshold=0.90, for_="5m"),
    Alert("CriticalSuccessRate", "critical", "success_rate", threshold=0.80, for_="2m"),
    Alert("HighErrorRate", "warning", "error_rate", threshold=0.10, for_="5m"),
    Alert("HighLatencyP95", "warning", "latency", threshold=5000, for_="10m"),
    Alert("HighLatencyP99", "warning", "latency", threshold=10000, for_="10m"),
    Alert("FrequentBudgetExceeded", "warning", "budget", threshold=5, window=BUDGET_WINDOW),
    Alert("HighToolErrorRate", "warning", "tool_errors", threshold=0.05, for_="5m"),
    Alert("ApprovalTimeouts", "critical", "approvals", threshold=0, for_="1m"),
    Alert("NoRecentExecutions", "info", "traffic", threshold=0, for_="30m"),
    Alert("DomainErrors", "warning", "domain_errors", threshold=5),
)

SENDER_DROPS_WINDOW = "10m"

PIPELINE_ALERTS: tuple[Alert, ...] = (
    Alert("CollectorRefusingData", "critical", "collector_intake", threshold=0, for_="2m",
          window=RATE_WINDOW),
    Alert("CollectorExportFailing", "critical", "collector_export", threshold=0, for_="5m",
          window=RATE_WINDOW),
    Alert("CollectorExporterQueueFull", "warning", "collector_export", threshold=0.8,
          for_="2m"),
    Alert("ScrapeTargetDown", "critical", "scrape", for_="2m"),
    Alert("CollectorCardinalityOverflow", "warning", "collector_cardinality", threshold=0,
          for_="5m", window=RATE_WINDOW),
    Alert("CollectorDroppingInvalidPoints", "warning", "collector_intake", threshold=0,
          for_="5m", window=RATE_WINDOW),
    # Any discarded span pages once per incident and resolves when the window has passed it.
    Alert("SendersDroppingTelemetry", "warning", "sender_drops", threshold=0,
          window=SENDER_DROPS_WINDOW),
)

# Alerts about alerts (after the upstream alertmanager and prometheus mixins): a page that
# cannot be delivered. All critical, as every one means pages may reach no one; Alertmanager
# routes family "alert_delivery" to a receiver of its own (monitoring/alertmanager).
ALERT_DELIVERY_FAMILY = "alert_delivery"
ALERT_DELIVERY_ALERTS: tuple[Alert, ...] = (
    Alert("AlertmanagerFailedToSendNotifications", "critical", ALERT_DELIVERY_FAMILY,
          threshold=0.01, for_="5m", window=RATE_WINDOW),
    Alert("PrometheusErrorSendingAlertsToAnyAlertmanager", "critical", ALERT_DELIVERY_FAMILY,
          threshold=0.03, for_="5m", window=RATE_WINDOW),
    Alert("PrometheusNotConnectedToAlertmanagers", "critical", ALERT_DELIVERY_FAMILY,
          threshold=1, for_="10m", window=RATE_WINDOW),
)

# LLM calls. Cost: each profile's LLM spend in the last LLM_COST_WINDOW against its budget for
# that window, in USD (the unit of cugar.llm.cost); profiles not listed get the default.
LLM_COST_WINDOW = "1h"
LLM_HOURLY_BUDGET_USD = 20.0
LLM_PROFILE_HOURLY_BUDGET_USD: dict[str, float] = {"enterprise": 40.0, "demo": 2.0}
# Tokens: the last LLM_TOKEN_WINDOW against the mean LLM_TOKEN_WINDOW of the
# LLM_TOKEN_BASELINE_WINDOW before it; below LLM_TOKEN_SPIKE_MIN tokens no jump is a spike.
LLM_TOKEN_WINDOW = "10m"
LLM_TOKEN_BASELINE_WINDOW = "1h"
LLM_TOKEN_SPIKE_MIN = 50_000

LLM_ALERTS: tuple[Alert, ...] = (
    Alert("LLMCostOverBudget", "warning", "llm_cost", threshold=LLM_HOURLY_BUDGET_USD,
          window=LLM_COST_WINDOW),
    Alert("LLMTokenSpike", "warning", "llm_tokens", threshold=3, for_="5m",
          window=LLM_TOKEN_WINDOW),
    Alert("HighLLMErrorRate", "warning", "llm_errors", threshold=0.10, for_="5m"),
)

# GenAI agents of any framework (the collector's span-derived cugar_genai_* series), per
# service and agent name (tools: per service and tool name). Latency thresholds in seconds,
# the histograms' unit: an agent run of several model calls takes seconds to minutes.
GENAI_ALERTS: tuple[Alert, ...] = (
    Alert("GenAIAgentErrorRateHigh", "warning", "genai_agent_errors", threshold=0.10, for_="5m"),
    Alert("GenAIToolErrorRateHigh", "warning", "genai_tool_errors", threshold=0.10, for_="5m"),
    Alert("GenAIAgentLatencyP95High", "warning", "genai_agent_latency", threshold=30,
          for_="10m"),
)

ALERTS: dict[str, Alert] = {a.name: a for a in AGENT_ALERTS + PIPELINE_ALERTS
                            + ALERT_DELIVERY_ALERTS + LLM_ALERTS + GENAI_ALERTS}

# Dashboard colours that are not alert thresholds (green -> yellow -> red).
LATENCY_P95_WARN_MS = 3000
ERROR_RATE_WARN = 0.05
APPROVAL_WAIT_WARN_MS = 30_000
APPROVAL_WAIT_CRITICAL_MS = 120_000
TOOL_SUCCESS_WARN = 0.90
TOOL_SUCCESS_OK = 0.95
