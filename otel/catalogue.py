"""The metric catalogue: the one place that names every CUGAr metric.

Code (instruments and views), Prometheus rules, Grafana dashboards and docs are checked
against this module by tests. Instrument names ARE the Prometheus names: the collector's
prometheus exporter runs without suffix translation, so what is written here is exactly what
Prometheus stores (histograms gain `_bucket`, `_sum` and `_count`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

OTHER = "other"

DOMAINS: tuple[str, ...] = (
    "territory", "intelligence", "knowledge", "engagement", "qualification", "governance",
)
DEFAULT_PROFILES: tuple[str, ...] = (
    "enterprise", "smb", "technical", "demo", "sales_rep", "sales_manager",
)
EXECUTION_OUTCOMES: tuple[str, ...] = ("success", "failure")
TOOL_OUTCOMES: tuple[str, ...] = ("success", "error")
SIDE_EFFECTS: tuple[str, ...] = ("read-only", "propose", "execute")
APPROVAL_DECISIONS: tuple[str, ...] = ("approved", "rejected", "timeout")

# Canonical agent events (SPEC §2); each lands in traces as a span, span event or status.
CANONICAL_EVENTS: tuple[str, ...] = (
    "plan_created", "route_decision", "tool_call_start", "tool_call_complete",
    "tool_call_error", "budget_warning", "budget_exceeded", "approval_requested",
    "approval_received", "approval_timeout",
)

BUDGET_WARNING_RATIO = 0.8

# Default bound on distinct tool names (and error types) recorded as metric labels per
# process; later newcomers are recorded as "other". Overridable with CUGAR_MAX_TOOLS.
DEFAULT_MAX_TOOLS = 64
DEFAULT_MAX_ERROR_TYPES = 32


class Kind(str, Enum):
    COUNTER = "counter"
    HISTOGRAM = "histogram"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    unit: str  # UCUM, as OpenTelemetry expects
    description: str
    attributes: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    def series_names(self) -> tuple[str, ...]:
        """Names this metric takes in Prometheus."""
        if self.kind is Kind.HISTOGRAM:
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


DURATION_BUCKETS_MS = (
    25, 50, 100, 250, 500, 1000, 2000, 3000, 5000, 7500, 10000, 15000, 30000, 60000, 120000,
)
TOOL_DURATION_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
APPROVAL_WAIT_BUCKETS_MS = (
    100, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000, 600000,
)
STEPS_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30, 50)
UTILIZATION_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0)

C, H = Kind.COUNTER, Kind.HISTOGRAM

METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("cugar_executions_total", C, "{execution}",
               "Agent executions finished, by outcome and profile.", ("outcome", "profile")),
    MetricSpec("cugar_executions_successful", C, "{execution}",
               "Agent executions that succeeded (seed name; equals outcome=\"success\").",
               ("profile",)),
    MetricSpec("cugar_executions_failed", C, "{execution}",
               "Agent executions that failed (seed name; equals outcome=\"failure\").",
               ("profile",)),
    MetricSpec("cugar_tool_calls_total", C, "{call}",
               "Tool calls (plan steps) finished, by tool, domain, side-effect class and outcome.",
               ("tool", "domain", "side_effect", "outcome")),
    MetricSpec("cugar_tool_errors_total", C, "{call}",
               "Tool calls that ended in an error, by tool, domain and error type.",
               ("tool", "domain", "error_type")),
    MetricSpec("cugar_budget_used_total", C, "{cost_unit}",
               "Budget cost units spent by executions.", ("profile",)),
    MetricSpec("cugar_budget_warnings_total", C, "{execution}",
               "Executions whose spend crossed 80% of their budget ceiling.", ("profile",)),
    MetricSpec("cugar_budget_exceeded_total", C, "{execution}",
               "Executions whose spend exceeded their budget ceiling.", ("profile",)),
    MetricSpec("cugar_approvals_total", C, "{approval}",
               "Human approval gates resolved, by decision (approved, rejected, timeout).",
               ("decision",)),
    MetricSpec("cugar_approval_timeouts_total", C, "{approval}",
               "Human approval gates that timed out.", ()),
    MetricSpec("cugar_domain_usage_total", C, "{call}",
               "Tool calls per agent domain.", ("domain",)),
    MetricSpec("cugar_domain_errors_total", C, "{call}",
               "Tool call errors per agent domain.", ("domain",)),
    MetricSpec("cugar_execution_duration_milliseconds", H, "ms",
               "Wall-clock duration of an agent execution (monotonic clock).",
               ("outcome", "profile"), DURATION_BUCKETS_MS),
    MetricSpec("cugar_tool_call_duration_milliseconds", H, "ms",
               "Duration of one tool call.", ("tool", "domain", "outcome"),
               TOOL_DURATION_BUCKETS_MS),
    MetricSpec("cugar_approval_wait_milliseconds", H, "ms",
               "Time from approval request to decision (or timeout).", ("decision",),
               APPROVAL_WAIT_BUCKETS_MS),
    MetricSpec("cugar_execution_steps", H, "{step}",
               "Tool calls (plan steps) per execution.", ("profile", "outcome"), STEPS_BUCKETS),
    MetricSpec("cugar_budget_utilization_ratio", H, "1",
               "Budget used divided by the profile's ceiling, per execution.", ("profile",),
               UTILIZATION_BUCKETS),
)

METRICS_BY_NAME: dict[str, MetricSpec] = {m.name: m for m in METRICS}


@dataclass(frozen=True)
class RecordedSignal:
    """A Prometheus recording rule (golden signal) defined in monitoring/prometheus/rules."""

    name: str
    unit: str
    description: str
    labels: tuple[str, ...] = ()


# Recorded fleet-wide over a 5m window; absent when the window had no traffic.
GOLDEN_SIGNALS: tuple[RecordedSignal, ...] = (
    RecordedSignal("cugar_success_rate", "ratio", "Share of executions that succeeded (0..1)."),
    RecordedSignal("cugar_error_rate", "ratio", "Share of executions that failed (0..1)."),
    RecordedSignal("cugar_latency_ms", "ms", "Execution latency percentiles.", ("percentile",)),
    RecordedSignal("cugar_approval_wait_time_ms", "ms", "Mean approval wait time."),
    RecordedSignal("cugar_tool_error_rate", "ratio", "Share of tool calls that errored (0..1)."),
    RecordedSignal("cugar_budget_utilization", "ratio",
                   "Mean budget used / ceiling per execution (0..1, >1 when exceeded)."),
    RecordedSignal("cugar_steps_per_execution", "steps", "Mean tool calls per execution."),
)
LATENCY_PERCENTILES: dict[str, float] = {"p50": 0.50, "p95": 0.95, "p99": 0.99}

# Resource attributes that become labels on every series (instances never collide).
# service.name -> job, service.instance.id -> instance (prometheus exporter convention);
# deployment.environment.name -> deployment_environment (copied by the collector).
RESOURCE_LABELS: dict[str, str] = {
    "service.name": "job",
    "service.instance.id": "instance",
    "deployment.environment.name": "deployment_environment",
}


def all_series_names() -> set[str]:
    """Every series name the pipeline may produce for CUGAr (raw and recorded)."""
    names = {s for m in METRICS for s in m.series_names()}
    names.update(g.name for g in GOLDEN_SIGNALS)
    return names
