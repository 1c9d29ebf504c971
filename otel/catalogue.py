"""The metric catalogue: the one place that names every CUGAr metric.

Code (instruments), Prometheus rules, Grafana dashboards and docs are checked against this
module by tests. Instruments follow the OpenTelemetry conventions (dotted names, UCUM units,
base units: seconds). Prometheus stores them under the names its OTLP receiver's default
translation gives them (`MetricSpec.prometheus_name`: dots become underscores, the unit adds
a suffix, counters end in `_total`; histograms add `_bucket`, `_sum` and `_count`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_OPERATION_NAME as _GEN_AI_OPERATION_NAME,
)
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_PROVIDER_NAME as _GEN_AI_PROVIDER_NAME,
)
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_REQUEST_MODEL as _GEN_AI_REQUEST_MODEL,
)
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_TOKEN_TYPE as _GEN_AI_TOKEN_TYPE,
)
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GenAiProviderNameValues,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE as _ERROR_TYPE

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
# The SDK's own losses (cugar.telemetry.dropped): which signal, and why it was discarded. Only
# spans are ever discarded: metrics are cumulative, so the next export after a failed one
# carries every count again.
TELEMETRY_SIGNALS: tuple[str, ...] = ("traces",)
DROP_QUEUE_FULL = "queue_full"        # the bounded export queue was full (collector down/slow)
DROP_EXPORT_FAILED = "export_failed"  # the exporter gave up on a batch (after its retries)
DROP_SHUTDOWN = "shutdown"            # ended after shutdown began, or left at its deadline
DROP_REASONS: tuple[str, ...] = (DROP_QUEUE_FULL, DROP_EXPORT_FAILED, DROP_SHUTDOWN)

# -- Traces: span event names and our span attribute keys ------------------------------------
# The gen_ai.* and error.type keys are OpenTelemetry's: code takes them from
# opentelemetry.semconv. Every agent event below is a span event of that name.
EVENT_PLAN_CREATED = "plan_created"
EVENT_ROUTE_DECISION = "route_decision"
EVENT_TOOL_CALL_START = "tool_call_start"
EVENT_TOOL_CALL_COMPLETE = "tool_call_complete"
EVENT_TOOL_CALL_ERROR = "tool_call_error"
EVENT_BUDGET_WARNING = "budget_warning"
EVENT_BUDGET_EXCEEDED = "budget_exceeded"
EVENT_APPROVAL_REQUESTED = "approval_requested"
EVENT_APPROVAL_RECEIVED = "approval_received"
EVENT_APPROVAL_TIMEOUT = "approval_timeout"
CANONICAL_EVENTS: tuple[str, ...] = (
    EVENT_PLAN_CREATED, EVENT_ROUTE_DECISION, EVENT_TOOL_CALL_START, EVENT_TOOL_CALL_COMPLETE,
    EVENT_TOOL_CALL_ERROR, EVENT_BUDGET_WARNING, EVENT_BUDGET_EXCEEDED,
    EVENT_APPROVAL_REQUESTED, EVENT_APPROVAL_RECEIVED, EVENT_APPROVAL_TIMEOUT,
)

INSTRUMENTATION_SCOPE = "cugar.otel"
# gen_ai.operation.name of approval spans (GenAI has invoke_agent and execute_tool only).
APPROVAL_OPERATION = "approval"
TOOL_TYPE_FUNCTION = "function"  # gen_ai.tool.type of every tool call

CUGAR_PROFILE = "cugar.profile"
CUGAR_OUTCOME = "cugar.outcome"
CUGAR_STEPS = "cugar.steps"
CUGAR_DOMAIN = "cugar.domain"
CUGAR_SIDE_EFFECT = "cugar.side_effect"
CUGAR_PLAN_STEPS = "cugar.plan.steps"
CUGAR_BUDGET_CEILING = "cugar.budget.ceiling"
CUGAR_BUDGET_USED = "cugar.budget.used"
CUGAR_BUDGET_UTILIZATION = "cugar.budget.utilization"
# A budget in US dollars, spent by the execution's LLM calls (their cugar.llm.cost).
CUGAR_BUDGET_CEILING_USD = "cugar.budget.ceiling_usd"
CUGAR_BUDGET_USED_USD = "cugar.budget.used_usd"
# Which budget a budget_warning / budget_exceeded event is about (BUDGET_UNITS).
CUGAR_BUDGET_UNIT = "cugar.budget.unit"
CUGAR_APPROVAL_TOOL = "cugar.approval.tool"
CUGAR_APPROVAL_DECISION = "cugar.approval.decision"
CUGAR_APPROVAL_WAIT_MS = "cugar.approval.wait_ms"

BUDGET_WARNING_RATIO = 0.8
BUDGET_COST_UNIT, BUDGET_USD = "cost_unit", "USD"
BUDGET_UNITS: tuple[str, ...] = (BUDGET_COST_UNIT, BUDGET_USD)

# Default bound on distinct tool names (and error types) recorded as metric labels per
# process; later newcomers are recorded as "other". Overridable with CUGAR_MAX_TOOLS.
DEFAULT_MAX_TOOLS = 64
DEFAULT_MAX_ERROR_TYPES = 32


class Kind(str, Enum):
    COUNTER = "counter"
    HISTOGRAM = "histogram"


# The unit suffixes Prometheus' OTLP translation adds for the units this catalogue uses
# (annotations such as "{call}" and the dimensionless "1" add none to counters and histograms).
_UNIT_SUFFIX = {"s": "seconds", "1": ""}


def prometheus_name(name: str, unit: str, kind: Kind) -> str:
    """The name Prometheus 3's default OTLP translation (UnderscoreEscapingWithSuffixes) gives
    an instrument: `cugar.tool.call.duration` in "s" -> `cugar_tool_call_duration_seconds`."""
    tokens = [t for t in re.split(r"[^a-zA-Z0-9:]+", name) if t]
    suffix = "" if unit.startswith("{") else _UNIT_SUFFIX[unit]
    if suffix and suffix not in tokens:
        tokens.append(suffix)
    if kind is Kind.COUNTER:
        tokens = [t for t in tokens if t != "total"] + ["total"]
    return "_".join(tokens)


def label_name(attribute: str) -> str:
    """The Prometheus label an attribute key becomes (`error.type` -> `error_type`)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", attribute)


@dataclass(frozen=True)
class MetricSpec:
    name: str  # the OpenTelemetry instrument name
    kind: Kind
    unit: str  # UCUM, as OpenTelemetry expects
    description: str  # the HELP text users read
    attributes: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def prometheus_name(self) -> str:
        return prometheus_name(self.name, self.unit, self.kind)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(label_name(a) for a in self.attributes)

    def series_names(self) -> tuple[str, ...]:
        """Names this metric takes in Prometheus."""
        base = self.prometheus_name
        if self.kind is Kind.HISTOGRAM:
            return (f"{base}_bucket", f"{base}_sum", f"{base}_count")
        return (base,)

    def series(self, suffix: str = "") -> str:
        """One of `series_names()`: the counter itself, or a histogram's `_bucket` etc."""
        return self.prometheus_name + suffix


# Metric attribute keys (they become the Prometheus labels of the same name, dots as `_`).
# Sibling metrics list the labels they share in this order.
OUTCOME = "outcome"
PROFILE = "profile"
TOOL = "tool"
DOMAIN = "domain"
SIDE_EFFECT = "side_effect"
ERROR_TYPE = _ERROR_TYPE  # error.type, as on spans; Prometheus label `error_type`
DECISION = "decision"
SIGNAL = "signal"
REASON = "reason"

DURATION_BUCKETS_S = (
    0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60, 120,
)
TOOL_DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
APPROVAL_WAIT_BUCKETS_S = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
STEPS_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30, 50)
UTILIZATION_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0)

C, H = Kind.COUNTER, Kind.HISTOGRAM

EXECUTIONS = MetricSpec(
    "cugar.executions", C, "{execution}",
    "Agent executions finished, by outcome (success, failure) and profile.", (OUTCOME, PROFILE))
TOOL_CALLS = MetricSpec(
    "cugar.tool.calls", C, "{call}",
    "Tool calls (plan steps) finished, by tool, domain, side-effect class and outcome.",
    (TOOL, DOMAIN, SIDE_EFFECT, OUTCOME))
TOOL_ERRORS = MetricSpec(
    "cugar.tool.errors", C, "{call}",
    "Tool calls that ended in an error, by tool, domain and error type.",
    (TOOL, DOMAIN, ERROR_TYPE))
BUDGET_USED = MetricSpec(
    "cugar.budget.used", C, "{cost_unit}", "Budget cost units spent by executions.", (PROFILE,))
BUDGET_WARNINGS = MetricSpec(
    "cugar.budget.warnings", C, "{execution}",
    "Executions whose spend crossed 80% of a budget ceiling (cost units or USD).", (PROFILE,))
BUDGET_EXCEEDED = MetricSpec(
    "cugar.budget.exceeded", C, "{execution}",
    "Executions whose spend exceeded a budget ceiling (cost units or USD).", (PROFILE,))
APPROVALS = MetricSpec(
    "cugar.approvals", C, "{approval}",
    "Human approval gates resolved, by decision (approved, rejected, timeout).", (DECISION,))
APPROVAL_TIMEOUTS = MetricSpec(
    "cugar.approval.timeouts", C, "{approval}", "Human approval gates that timed out.")
DOMAIN_USAGE = MetricSpec(
    "cugar.domain.usage", C, "{call}", "Tool calls per agent domain.", (DOMAIN,))
DOMAIN_ERRORS = MetricSpec(
    "cugar.domain.errors", C, "{call}", "Tool call errors per agent domain.", (DOMAIN,))
EXECUTION_DURATION = MetricSpec(
    "cugar.execution.duration", H, "s",
    "Wall-clock duration of an agent execution (monotonic clock).", (OUTCOME, PROFILE),
    DURATION_BUCKETS_S)
TOOL_CALL_DURATION = MetricSpec(
    "cugar.tool.call.duration", H, "s", "Duration of one tool call.", (TOOL, DOMAIN, OUTCOME),
    TOOL_DURATION_BUCKETS_S)
APPROVAL_WAIT = MetricSpec(
    "cugar.approval.wait.duration", H, "s",
    "Time from an approval request to its decision (or timeout).", (DECISION,),
    APPROVAL_WAIT_BUCKETS_S)
EXECUTION_STEPS = MetricSpec(
    "cugar.execution.steps", H, "{step}", "Tool calls (plan steps) per execution.",
    (OUTCOME, PROFILE), STEPS_BUCKETS)
BUDGET_UTILIZATION = MetricSpec(
    "cugar.budget.utilization.ratio", H, "1",
    "Budget used divided by its ceiling, per execution (the larger share when the execution "
    "has a ceiling in cost units and one in USD).", (PROFILE,),
    UTILIZATION_BUCKETS)
# Pipeline health from the sender's side: what the process discarded before the collector had
# it (tel.stats() counts the same). Every process reports 0 per reason from its start.
TELEMETRY_DROPPED = MetricSpec(
    "cugar.telemetry.dropped", C, "{item}",
    "Telemetry items this process discarded before the collector accepted them, by signal "
    "(traces) and reason (queue_full, export_failed, shutdown).", (SIGNAL, REASON))

# -- LLM calls: `chat {model}` CLIENT spans and the GenAI client metrics ----------------------
# Both metric layouts of the OpenTelemetry GenAI conventions are recorded for every call, so
# dashboards and collectors built for either find their series:
# - semantic conventions 1.37-1.41 (what most instrumentations emit today):
#   gen_ai.client.operation.duration and gen_ai.client.token.usage (by gen_ai.token.type);
# - the semantic-conventions-genai repository (client-inference.md, token-metrics.yaml):
#   gen_ai.client.inference.duration and the token counters
#   gen_ai.client.inference.usage.{input,output}_tokens (by gen_ai.token.modality).
# Streaming calls add time to first chunk in both layouts. Buckets are the conventions' advised
# ExplicitBucketBoundaries. Labels: the operation and provider are closed sets (the provider's
# from the conventions' well-known values), the request model an open set bounded per service.
GEN_AI_OPERATION = _GEN_AI_OPERATION_NAME  # Prometheus label gen_ai_operation_name
GEN_AI_PROVIDER = _GEN_AI_PROVIDER_NAME    # gen_ai_provider_name
GEN_AI_MODEL = _GEN_AI_REQUEST_MODEL       # gen_ai_request_model
GEN_AI_TOKEN_TYPE = _GEN_AI_TOKEN_TYPE     # gen_ai_token_type (1.37-1.41 layout)
GEN_AI_TOKEN_MODALITY = "gen_ai.token.modality"  # semantic-conventions-genai; not in the package yet

LLM_OPERATIONS: tuple[str, ...] = ("chat", "text_completion", "generate_content")
# The semantic-conventions package's well-known providers, plus those the newer
# semantic-conventions-genai list adds (client-inference.md: moonshot_ai).
LLM_PROVIDERS: tuple[str, ...] = tuple(dict.fromkeys(
    [v.value for v in GenAiProviderNameValues] + ["moonshot_ai"]))
TOKEN_TYPES: tuple[str, ...] = ("input", "output")
TOKEN_MODALITIES: tuple[str, ...] = ("text", "image", "audio", "video", "unknown")
# Span attributes of chat spans that the conventions do not name.
CUGAR_LLM_COST = "cugar.llm.cost"  # USD of this call; absent when the model has no price
# Cost is rounded to a multiple of this many USD per call (2^-30, about a nano-dollar), so that
# sums are exact whatever the order of addition (per process, per collector, in Prometheus):
# the ground truth equals the counter to the last bit.
LLM_COST_QUANTUM_USD = 2.0 ** -30
DEFAULT_MAX_MODELS = 32

GENAI_DURATION_BUCKETS_S = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
GENAI_TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)

_LLM_CALL = (GEN_AI_OPERATION, GEN_AI_PROVIDER, GEN_AI_MODEL)

LLM_OPERATION_DURATION = MetricSpec(
    "gen_ai.client.operation.duration", H, "s",
    "GenAI operation duration (one LLM call), by operation, provider, model and error type "
    "(set on failed calls only).", (*_LLM_CALL, ERROR_TYPE), GENAI_DURATION_BUCKETS_S)
LLM_TOKEN_USAGE = MetricSpec(
    "gen_ai.client.token.usage", H, "{token}",
    "Number of input and output tokens used per LLM call, by token type.",
    (*_LLM_CALL, GEN_AI_TOKEN_TYPE), GENAI_TOKEN_BUCKETS)
LLM_TIME_TO_FIRST_CHUNK = MetricSpec(
    "gen_ai.client.operation.time_to_first_chunk", H, "s",
    "Time from a streaming LLM request to its first response chunk.", _LLM_CALL,
    GENAI_DURATION_BUCKETS_S)
LLM_INFERENCE_DURATION = MetricSpec(
    "gen_ai.client.inference.duration", H, "s",
    "GenAI inference duration (one LLM call), by operation, provider, model and error type "
    "(set on failed calls only).", (*_LLM_CALL, ERROR_TYPE), GENAI_DURATION_BUCKETS_S)
LLM_INFERENCE_TIME_TO_FIRST_CHUNK = MetricSpec(
    "gen_ai.client.inference.time_to_first_chunk", H, "s",
    "Time from a streaming inference request to its first response chunk.", _LLM_CALL,
    GENAI_DURATION_BUCKETS_S)
LLM_INPUT_TOKENS = MetricSpec(
    "gen_ai.client.inference.usage.input_tokens", C, "{token}",
    "Input (prompt) tokens used by LLM calls, cached ones included.",
    (*_LLM_CALL, GEN_AI_TOKEN_MODALITY))
LLM_OUTPUT_TOKENS = MetricSpec(
    "gen_ai.client.inference.usage.output_tokens", C, "{token}",
    "Output (completion) tokens used by LLM calls, reasoning ones included.",
    (*_LLM_CALL, GEN_AI_TOKEN_MODALITY))
# Cost in US dollars: one currency as the unit (the price table's), so that sum() over any
# labels stays meaningful; a currency label would invite adding dollars to euros.
LLM_COST = MetricSpec(
    "cugar.llm.cost", C, "{USD}",
    "Cost of LLM calls in US dollars, from their tokens and the price table, by provider, "
    "model and profile (calls without a price are counted in cugar.llm.cost.unpriced).",
    (GEN_AI_PROVIDER, GEN_AI_MODEL, PROFILE))
# The conventions' token metrics carry no profile: this one does, for spend per customer profile.
LLM_TOKENS = MetricSpec(
    "cugar.llm.tokens", C, "{token}",
    "Tokens used by LLM calls, by provider, model, profile and token type (input, output).",
    (GEN_AI_PROVIDER, GEN_AI_MODEL, PROFILE, GEN_AI_TOKEN_TYPE))
LLM_COST_UNPRICED = MetricSpec(
    "cugar.llm.cost.unpriced", C, "{call}",
    "LLM calls whose cost is unknown (no price for the model): not guessed, not in "
    "cugar.llm.cost.", (GEN_AI_PROVIDER, GEN_AI_MODEL))

LLM_METRICS: tuple[MetricSpec, ...] = (
    LLM_OPERATION_DURATION, LLM_TOKEN_USAGE, LLM_TIME_TO_FIRST_CHUNK, LLM_INFERENCE_DURATION,
    LLM_INFERENCE_TIME_TO_FIRST_CHUNK, LLM_INPUT_TOKENS, LLM_OUTPUT_TOKENS, LLM_COST,
    LLM_TOKENS, LLM_COST_UNPRICED,
)

METRICS: tuple[MetricSpec, ...] = (
    EXECUTIONS, TOOL_CALLS, TOOL_ERRORS, BUDGET_USED, BUDGET_WARNINGS, BUDGET_EXCEEDED,
    APPROVALS, APPROVAL_TIMEOUTS, DOMAIN_USAGE, DOMAIN_ERRORS,
    EXECUTION_DURATION, TOOL_CALL_DURATION, APPROVAL_WAIT, EXECUTION_STEPS, BUDGET_UTILIZATION,
    TELEMETRY_DROPPED,
) + LLM_METRICS

METRICS_BY_NAME: dict[str, MetricSpec] = {m.name: m for m in METRICS}

# -- Label vocabularies, as the collector's cardinality guard enforces them -------------------
# Every metric attribute is closed or open. A closed one takes values from a fixed vocabulary
# (anything else becomes `other`). An open one (tool names, error types, profiles: CUGAR_PROFILES
# names a deployment's own) is bounded per service.name, across all its instances: the first N
# distinct values the collector sees are kept, later newcomers become `other`. The SDK bounds
# per process (CUGAR_MAX_TOOLS ...); the collector's bounds hold for any sender
# (collector/cardinalityguard, configured from here by `python -m services.monitoring`).
CLOSED_VALUES: dict[str, tuple[str, ...]] = {
    DOMAIN: DOMAINS, SIDE_EFFECT: SIDE_EFFECTS, DECISION: APPROVAL_DECISIONS,
    SIGNAL: TELEMETRY_SIGNALS, REASON: DROP_REASONS,
    # LLM calls
    GEN_AI_OPERATION: LLM_OPERATIONS, GEN_AI_PROVIDER: LLM_PROVIDERS,
    GEN_AI_TOKEN_TYPE: TOKEN_TYPES, GEN_AI_TOKEN_MODALITY: TOKEN_MODALITIES,
}
OPEN_SET_LIMITS: dict[str, int] = {TOOL: 256, ERROR_TYPE: 128, PROFILE: 64,
                                   GEN_AI_MODEL: 64}
# Services the guard tracks; the open attributes of any further service all become `other`.
COLLECTOR_MAX_SERVICES = 256


def closed_values(metric: MetricSpec, attribute: str) -> tuple[str, ...] | None:
    """The vocabulary of a closed attribute of `metric`, None when the attribute is open."""
    if attribute == OUTCOME:
        return TOOL_OUTCOMES if TOOL in metric.attributes else EXECUTION_OUTCOMES
    return CLOSED_VALUES.get(attribute)


@dataclass(frozen=True)
class RecordedSignal:
    """A Prometheus recording rule (golden signal) defined in monitoring/prometheus/rules."""

    name: str
    unit: str
    description: str
    labels: tuple[str, ...] = ()


# Recorded fleet-wide over a 5m window; absent when the window had no traffic. Their names
# and units (ms) are what the dashboards, alerts and API read.
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

# Per-outcome execution counters kept under their earlier names for existing queries: recorded
# per instance (every label but `outcome` kept) from the conventional counter.
PER_OUTCOME_RECORDED: dict[str, tuple[MetricSpec, str, str]] = {
    "cugar_executions_successful": (EXECUTIONS, OUTCOME, "success"),
    "cugar_executions_failed": (EXECUTIONS, OUTCOME, "failure"),
}

# Resource attributes that identify a sender on every series (instances never collide).
# Prometheus' OTLP receiver makes service.name `job` and service.instance.id `instance`;
# the others are promoted to labels by prometheus.yml's `otlp.promote_resource_attributes`.
RESOURCE_LABELS: dict[str, str] = {
    "service.name": "job",
    "service.instance.id": "instance",
    "deployment.environment.name": "deployment_environment_name",
}
PROMOTED_RESOURCE_ATTRIBUTES: tuple[str, ...] = ("deployment.environment.name",)


def all_series_names() -> set[str]:
    """Every series name the pipeline may produce for CUGAr (raw and recorded)."""
    names = {s for m in METRICS for s in m.series_names()}
    names.update(g.name for g in GOLDEN_SIGNALS)
    names.update(PER_OUTCOME_RECORDED)
    return names


# == GenAI agents from any framework: collector-derived metrics ================================
# Not instruments of our SDK: the collector derives them from the invoke_agent, execute_tool
# and chat (inference) spans of any sender that is not our library (PydanticAI, the OpenAI
# Agents SDK, any GenAI-instrumented agent), with its signal_to_metrics connector
# (otel-collector-config.yaml, block generated by `python -m services.monitoring` from here and
# services/monitoring/collector_genai.py). docs/pipeline.md#genai-agents-from-any-framework
#
# Named under cugar.genai.*, not gen_ai.client.*: senders may emit the GenAI conventions'
# metrics themselves (PydanticAI records gen_ai.client.token.usage and
# gen_ai.client.operation.duration natively, our library does for its own LLM calls), and a
# span-derived copy under the same name and labels would be a second writer of the same series.
# Labels are bounded: agent, tool and model names are open sets (per service), error.type the
# catalogue's; no conversation, call, response or trace ids, no content.
GENAI_AGENT_NAME = "gen_ai.agent.name"
GENAI_TOOL_NAME = "gen_ai.tool.name"
GENAI_MODEL = "gen_ai.request.model"
# The value a derived label takes when the span lacks its attribute.
GENAI_UNKNOWN = "unknown"
# error.type of a failed span that names none (the GenAI conventions' fallback value).
GENAI_ERROR_FALLBACK = "_OTHER"
# gen_ai.client.operation.duration's advised buckets (GenAI semantic conventions).
GENAI_INFERENCE_BUCKETS_S = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)


@dataclass(frozen=True)
class DerivedMetric:
    """A metric the collector derives from GenAI spans of other senders."""

    spec: MetricSpec
    spans: str  # "agent" (invoke_agent), "tool" (execute_tool), "inference" (chat & co.)
    value: str  # "count", "duration", "input_tokens" or "output_tokens"
    errors_only: bool = False  # only failed spans (status ERROR or an error.type)
    # Labels taken when the span has them, absent otherwise (the agent a tool or LLM call
    # belongs to: PydanticAI says, the OpenAI Agents instrumentation does not).
    optional: tuple[str, ...] = ()


GENAI_AGENT_INVOCATIONS = DerivedMetric(MetricSpec(
    "cugar.genai.agent.invocations", C, "{invocation}",
    "GenAI agent invocations (invoke_agent spans) of any framework, by agent name.",
    (GENAI_AGENT_NAME,)), "agent", "count")
GENAI_AGENT_ERRORS = DerivedMetric(MetricSpec(
    "cugar.genai.agent.errors", C, "{invocation}",
    "GenAI agent invocations that failed, by agent name and error type.",
    (GENAI_AGENT_NAME, ERROR_TYPE)), "agent", "count", errors_only=True)
GENAI_AGENT_DURATION = DerivedMetric(MetricSpec(
    "cugar.genai.agent.duration", H, "s", "Duration of GenAI agent invocations, by agent name.",
    (GENAI_AGENT_NAME,), DURATION_BUCKETS_S), "agent", "duration")
GENAI_TOOL_CALLS = DerivedMetric(MetricSpec(
    "cugar.genai.tool.calls", C, "{call}",
    "GenAI tool executions (execute_tool spans) of any framework, by tool and agent name.",
    (GENAI_TOOL_NAME, GENAI_AGENT_NAME)), "tool", "count", optional=(GENAI_AGENT_NAME,))
GENAI_TOOL_ERRORS = DerivedMetric(MetricSpec(
    "cugar.genai.tool.errors", C, "{call}",
    "GenAI tool executions that failed, by tool, agent name and error type.",
    (GENAI_TOOL_NAME, GENAI_AGENT_NAME, ERROR_TYPE)), "tool", "count", errors_only=True,
    optional=(GENAI_AGENT_NAME,))
GENAI_TOOL_DURATION = DerivedMetric(MetricSpec(
    "cugar.genai.tool.duration", H, "s", "Duration of GenAI tool executions, by tool and agent name.",
    (GENAI_TOOL_NAME, GENAI_AGENT_NAME), TOOL_DURATION_BUCKETS_S), "tool", "duration",
    optional=(GENAI_AGENT_NAME,))
GENAI_INFERENCE_CALLS = DerivedMetric(MetricSpec(
    "cugar.genai.inference.calls", C, "{call}",
    "GenAI model calls (chat, generate_content, text_completion spans), by requested model "
    "and agent name.", (GENAI_MODEL, GENAI_AGENT_NAME)), "inference", "count",
    optional=(GENAI_AGENT_NAME,))
GENAI_INFERENCE_ERRORS = DerivedMetric(MetricSpec(
    "cugar.genai.inference.errors", C, "{call}",
    "GenAI model calls that failed, by requested model, agent name and error type.",
    (GENAI_MODEL, GENAI_AGENT_NAME, ERROR_TYPE)), "inference", "count", errors_only=True,
    optional=(GENAI_AGENT_NAME,))
GENAI_INFERENCE_DURATION = DerivedMetric(MetricSpec(
    "cugar.genai.inference.duration", H, "s",
    "Duration of GenAI model calls, by requested model and agent name.",
    (GENAI_MODEL, GENAI_AGENT_NAME), GENAI_INFERENCE_BUCKETS_S), "inference", "duration",
    optional=(GENAI_AGENT_NAME,))
GENAI_INPUT_TOKENS = DerivedMetric(MetricSpec(
    "cugar.genai.inference.input_tokens", C, "{token}",
    "Input tokens of GenAI model calls (gen_ai.usage.input_tokens), by requested model and "
    "agent name.", (GENAI_MODEL, GENAI_AGENT_NAME)), "inference", "input_tokens",
    optional=(GENAI_AGENT_NAME,))
GENAI_OUTPUT_TOKENS = DerivedMetric(MetricSpec(
    "cugar.genai.inference.output_tokens", C, "{token}",
    "Output tokens of GenAI model calls (gen_ai.usage.output_tokens), by requested model and "
    "agent name.", (GENAI_MODEL, GENAI_AGENT_NAME)), "inference", "output_tokens",
    optional=(GENAI_AGENT_NAME,))

GENAI_DERIVED: tuple[DerivedMetric, ...] = (
    GENAI_AGENT_INVOCATIONS, GENAI_AGENT_ERRORS, GENAI_AGENT_DURATION,
    GENAI_TOOL_CALLS, GENAI_TOOL_ERRORS, GENAI_TOOL_DURATION,
    GENAI_INFERENCE_CALLS, GENAI_INFERENCE_ERRORS, GENAI_INFERENCE_DURATION,
    GENAI_INPUT_TOKENS, GENAI_OUTPUT_TOKENS,
)
# The collector's cardinality guard bounds them like the SDK's metrics: the names are open sets
# (per service), error.type shares the catalogue's set.
GENAI_OPEN_SET_LIMITS: dict[str, int] = {GENAI_AGENT_NAME: 64, GENAI_TOOL_NAME: 256, GENAI_MODEL: 64}
for _key, _limit in GENAI_OPEN_SET_LIMITS.items():
    OPEN_SET_LIMITS.setdefault(_key, _limit)
# Every metric the collector's cardinality guard bounds: our SDK's and the derived ones.
GUARDED_METRICS: tuple[MetricSpec, ...] = METRICS + tuple(d.spec for d in GENAI_DERIVED)


def genai_derived_series_names() -> set[str]:
    """Every series name of the collector-derived GenAI metrics (present only once a sender
    other than our library has sent GenAI spans)."""
    return {s for d in GENAI_DERIVED for s in d.spec.series_names()}
