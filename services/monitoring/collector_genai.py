"""The collector's signal_to_metrics/genai connector, generated from otel/catalogue.py.

It derives the catalogue's GENAI_DERIVED metrics from the GenAI spans of any sender but our own
library (whose executions, tool calls and LLM calls are counted by its SDK instruments; its
spans carry the instrumentation scope catalogue.INSTRUMENTATION_SCOPE). Both span layouts in
use are accepted:

- the older one (GenAI semantic conventions up to 1.36: `gen_ai.system`, and senders that set
  no `gen_ai.operation.name` but name LLM spans `chat {model}` / `text_completion {model}`);
- the newer one (semantic conventions 1.37+ and the semantic-conventions-genai repository:
  `gen_ai.provider.name`, `gen_ai.operation.name` invoke_agent / execute_tool / chat /
  generate_content / text_completion).

Token counts are `gen_ai.usage.input_tokens` / `output_tokens` (both layouts). Workflow spans
(`invoke_workflow`) are not agent invocations: a run that is both would count twice.
`python -m services.monitoring` writes the block into otel-collector-config.yaml between the
BEGIN/END markers under `connectors:`, and the filter that keeps every other span away from it
(the traces/genai pipeline's filter/genai_spans) under `processors:`.
"""

from __future__ import annotations

from otel import catalogue
from otel.catalogue import DerivedMetric, Kind

from . import collector_guard

BEGIN = "  # BEGIN GENERATED signal_to_metrics/genai"
END = "  # END GENERATED signal_to_metrics/genai"
NAME = "signal_to_metrics/genai"

FILTER_BEGIN = "  # BEGIN GENERATED filter/genai_spans"
FILTER_END = "  # END GENERATED filter/genai_spans"
FILTER_NAME = "filter/genai_spans"

_OP = 'span.attributes["gen_ai.operation.name"]'
_OURS = f'instrumentation_scope.name == "{catalogue.INSTRUMENTATION_SCOPE}"'
_NOT_OURS = f'instrumentation_scope.name != "{catalogue.INSTRUMENTATION_SCOPE}"'
_SENDER_KEYS = ("gen_ai.provider.name", "gen_ai.system")  # the newer and the older layout
_GENAI_SENDER = "(" + " or ".join(f'span.attributes["{k}"] != nil' for k in _SENDER_KEYS) + ")"
INFERENCE_OPERATIONS = ("chat", "generate_content", "text_completion")
# One OTTL condition per accepted layout (the connector ORs a metric's conditions).
SPANS: dict[str, tuple[str, ...]] = {
    "agent": (f'{_OP} == "invoke_agent" and {_NOT_OURS}',),
    "tool": (f'{_OP} == "execute_tool" and {_NOT_OURS}',),
    "inference": (
        "(" + " or ".join(f'{_OP} == "{op}"' for op in INFERENCE_OPERATIONS) + f") and {_NOT_OURS}",
        f'{_OP} == nil and IsMatch(span.name, "^({"|".join(INFERENCE_OPERATIONS)})( |$)") '
        f'and {_GENAI_SENDER} and {_NOT_OURS}',
    ),
}
_FAILED = ('(span.status.code == STATUS_CODE_ERROR or '
           f'span.attributes["{catalogue.ERROR_TYPE}"] != nil)')
_COUNT = "Int(AdjustedCount())"  # a span sampled at 1/n stands for n
_DURATION = "Seconds(span.end_time - span.start_time)"
_TOKENS = {"input_tokens": "gen_ai.usage.input_tokens", "output_tokens": "gen_ai.usage.output_tokens"}
# Identity of the sender (Prometheus' job / instance, and the promoted environment).
RESOURCE_ATTRIBUTES = tuple(catalogue.RESOURCE_LABELS)


def _attributes(d: DerivedMetric) -> list[dict]:
    out = []
    for key in d.spec.attributes:
        if key in d.optional:
            out.append({"key": key, "optional": True})
        elif key == catalogue.ERROR_TYPE:
            out.append({"key": key, "default_value": catalogue.GENAI_ERROR_FALLBACK})
        else:
            out.append({"key": key, "default_value": catalogue.GENAI_UNKNOWN})
    return out


def _conditions(d: DerivedMetric) -> list[str]:
    conditions = list(SPANS[d.spans])
    if d.errors_only:
        conditions = [f"{c} and {_FAILED}" for c in conditions]
    if d.value in _TOKENS:
        conditions = [f'{c} and span.attributes["{_TOKENS[d.value]}"] != nil' for c in conditions]
    return conditions


def metric(d: DerivedMetric) -> dict:
    spec = d.spec
    entry: dict = {"name": spec.name, "description": spec.description, "unit": spec.unit,
                   "include_resource_attributes": [{"key": k} for k in RESOURCE_ATTRIBUTES],
                   "attributes": _attributes(d), "conditions": _conditions(d)}
    if spec.kind is Kind.HISTOGRAM:
        entry["histogram"] = {"buckets": list(spec.buckets), "count": _COUNT, "value": _DURATION}
    elif d.value == "count":
        entry["sum"] = {"value": _COUNT, "monotonic": True}
    else:
        entry["sum"] = {"value": f'Int(span.attributes["{_TOKENS[d.value]}"])', "monotonic": True}
    return entry


def connector_config() -> dict:
    # Errors (a span whose token attribute is no number) skip that span, logged; never the batch.
    return {"error_mode": "ignore", "spans": [metric(d) for d in catalogue.GENAI_DERIVED]}


def filter_config() -> dict:
    """The spans no condition of the connector can hold for: our library's, and those with
    neither an operation name nor a GenAI provider or system (every condition in SPANS needs
    one of them). The connector evaluates each of its metrics on every span it is given, so the
    GenAI branch drops these first (docs/benchmarks.md, run I: on every span the connector took
    28 % of the collector's CPU)."""
    not_genai = " and ".join(f'span.attributes["{k}"] == nil' for k in ("gen_ai.operation.name",
                                                                         *_SENDER_KEYS))
    return {"error_mode": "ignore", "trace_conditions": [f"{_OURS} or ({not_genai})"]}


def filter_block() -> str:
    return collector_guard.generated_block(FILTER_BEGIN, FILTER_END, [
        "Generated by `python -m services.monitoring` from services/monitoring/collector_genai.py;",
        "do not edit by hand. The traces/genai pipeline's first filter: only spans that",
        "signal_to_metrics/genai can count reach it (counted as filtered otherwise)."],
        {FILTER_NAME: filter_config()})


def block() -> str:
    return collector_guard.generated_block(BEGIN, END, [
        "Generated by `python -m services.monitoring` from otel/catalogue.py (GENAI_DERIVED)",
        "and services/monitoring/collector_genai.py; do not edit by hand",
        "(tests/test_collector_config.py fails when it is stale). Delta sums and histograms",
        "per batch of spans; after the cardinality guard, delta_to_cumulative/genai turns",
        "them into the cumulative series Prometheus stores.",
        "docs/pipeline.md#genai-agents-from-any-framework"],
        {NAME: connector_config()})


def render(text: str) -> str:
    """`text` (otel-collector-config.yaml) with its generated blocks rewritten."""
    text = collector_guard.replace_block(text, FILTER_BEGIN, FILTER_END, filter_block(),
                                         "processors")
    return collector_guard.replace_block(text, BEGIN, END, block(), "connectors")
