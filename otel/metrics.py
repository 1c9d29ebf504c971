"""Catalogue metrics, pre-aggregated in-process and handed to OpenTelemetry exporters.

The hot path is a dict update under one lock per agent event (a tool call updates four
series at once). The OpenTelemetry SDK's per-measurement path costs ~10 us per call here,
which is more than the agent work being measured; aggregating locally and converting to
the SDK data model (`opentelemetry.sdk.metrics.export`) at collection time keeps the data
and the exporters identical while making recording ~50x cheaper.

This module is the "view" of the catalogue: explicit buckets and attribute allow-lists come
from `otel.catalogue` and nowhere else. Temporality is cumulative from process start.

Histograms carry exemplars the way the SDK's default reservoir for explicit-bucket histograms
(AlignedHistogramBucketExemplarReservoir) does: per series and bucket, the last measurement
since the previous collection, with the trace and span id of the span it was recorded in, as
`OTEL_METRICS_EXEMPLAR_FILTER` decides (trace_based, the default: only measurements inside a
sampled span; always_on; always_off). Each collection for export takes them (the SDK resets
its reservoirs at collection too), so an exemplar is exported once.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from typing import Iterator

from opentelemetry import trace
from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    Sum,
)

from otel import catalogue, config
from otel.catalogue import Kind, MetricSpec

_CUMULATIVE = AggregationTemporality.CUMULATIVE
_SUCCESS, _FAILURE = catalogue.EXECUTION_OUTCOMES
_TOOL_SUCCESS, _TOOL_ERROR = catalogue.TOOL_OUTCOMES
_TIMEOUT = catalogue.APPROVAL_DECISIONS[2]  # (approved, rejected, timeout)
_INPUT, _OUTPUT = catalogue.TOKEN_TYPES
_TEXT = catalogue.TOKEN_MODALITIES[0]

# OTEL_METRICS_EXEMPLAR_FILTER values (the SDK's names); trace_based is the SDK's default.
EXEMPLAR_FILTERS = config.EXEMPLAR_FILTERS  # ("trace_based", "always_on", "always_off")
_TRACE_BASED, _ALWAYS_ON, _ALWAYS_OFF = EXEMPLAR_FILTERS


class _HistogramState:
    __slots__ = ("counts", "sum", "count", "min", "max", "exemplars")

    def __init__(self, n_buckets: int) -> None:
        self.counts = [0] * n_buckets
        self.sum = 0.0
        self.count = 0
        self.min = math.inf
        self.max = -math.inf
        # Per bucket: (value, time_ns, span_id, trace_id) of its last sampled measurement.
        self.exemplars: list[tuple | None] | None = None

    def record(self, index: int, value: float) -> None:
        self.counts[index] += 1
        self.sum += value
        self.count += 1
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def offer(self, index: int, value: float, span_id: int | None,
              trace_id: int | None) -> None:
        exemplars = self.exemplars
        if exemplars is None:
            exemplars = self.exemplars = [None] * len(self.counts)
        exemplars[index] = (value, time.time_ns(), span_id, trace_id)

    def take_exemplars(self) -> list[Exemplar]:
        exemplars, self.exemplars = self.exemplars, None
        if exemplars is None:
            return []
        # Bucket order is value order: Prometheus attaches each one to the first `le` above it.
        return [Exemplar(None, value, t, span_id, trace_id)
                for value, t, span_id, trace_id in filter(None, exemplars)]


class MetricStore:
    """Cumulative counters and explicit-bucket histograms for every catalogue metric.

    Series are keyed by a tuple of label values in the order of `MetricSpec.attributes`
    (the allow-list); callers pass values that already went through the cardinality guard.
    Metrics are named by their `MetricSpec` (`catalogue.BUDGET_USED`, ...).
    """

    def __init__(self, specs: tuple[MetricSpec, ...] = catalogue.METRICS,
                 exemplar_filter: str = _TRACE_BASED) -> None:
        if exemplar_filter not in EXEMPLAR_FILTERS:
            raise ValueError(f"exemplar_filter must be one of {EXEMPLAR_FILTERS}, "
                             f"got {exemplar_filter!r}")
        # The module's own string, so the hot path compares by identity.
        self.exemplar_filter = EXEMPLAR_FILTERS[EXEMPLAR_FILTERS.index(exemplar_filter)]
        self.lock = threading.Lock()
        self.start_time_ns = time.time_ns()
        self.specs = {s.name: s for s in specs}
        self.counters: dict[str, dict[tuple, float]] = {
            s.name: {} for s in specs if s.kind is Kind.COUNTER}
        self.histograms: dict[str, dict[tuple, _HistogramState]] = {
            s.name: {} for s in specs if s.kind is Kind.HISTOGRAM}
        self.bounds: dict[str, tuple[float, ...]] = {
            s.name: tuple(float(b) for b in s.buckets) for s in specs if s.kind is Kind.HISTOGRAM}
        self._attr_cache: dict[tuple[str, tuple], dict[str, str]] = {}

    # -- recording (caller holds self.lock for multi-series updates) ------------------------
    def _add(self, spec: MetricSpec, key: tuple, amount: float = 1) -> None:
        series = self.counters[spec.name]
        series[key] = series.get(key, 0) + amount

    def _observe(self, spec: MetricSpec, key: tuple, value: float,
                 span: trace.SpanContext | None = None) -> None:
        """`span`: the context of the span the measurement belongs to (default: the current
        span), the exemplar's trace and span id."""
        name = spec.name
        series = self.histograms[name]
        state = series.get(key)
        if state is None:
            state = series[key] = _HistogramState(len(self.bounds[name]) + 1)
        # Bucket i holds (bounds[i-1], bounds[i]]: OpenTelemetry's explicit-bucket rule.
        index = bisect_left(self.bounds[name], value)
        state.record(index, value)
        mode = self.exemplar_filter
        if mode is _ALWAYS_OFF:
            return
        if span is None:
            span = trace.get_current_span().get_span_context()
        if span.is_valid:
            if mode is _TRACE_BASED and not span.trace_flags.sampled:
                return
            state.offer(index, value, span.span_id, span.trace_id)
        elif mode is _ALWAYS_ON:
            state.offer(index, value, None, None)

    def add(self, spec: MetricSpec, key: tuple, amount: float = 1) -> None:
        """Add `amount` to counter `spec`'s series `key` (label values, catalogue order)."""
        with self.lock:
            self._add(spec, key, amount)

    def observe(self, spec: MetricSpec, key: tuple, value: float, *,
                span: trace.SpanContext | None = None) -> None:
        """Record `value` (in `spec.unit`) in histogram `spec`'s series `key` (`span`: see
        `_observe`)."""
        with self.lock:
            self._observe(spec, key, value, span)

    # -- reading ----------------------------------------------------------------------------
    def _attributes(self, name: str, key: tuple) -> dict[str, str]:
        cached = self._attr_cache.get((name, key))
        if cached is None:
            # None = an attribute this point does not carry (error.type of a successful call)
            cached = {a: v for a, v in zip(self.specs[name].attributes, key) if v is not None}
            self._attr_cache[(name, key)] = cached
        return cached

    def series_count(self) -> int:
        with self.lock:
            return sum(map(len, self.counters.values())) + sum(map(len, self.histograms.values()))

    def snapshot(self, exemplars: bool = False
                 ) -> Iterator[tuple[MetricSpec, list[tuple[dict[str, str], object]]]]:
        """(spec, [(attributes, value-or-(counts, sum, count, min, max))]) per non-empty metric;
        with `exemplars`, histogram values also carry the exemplars taken (a 6th item)."""
        with self.lock:
            copied = []
            for name, series in self.counters.items():
                if series:
                    copied.append((name, list(series.items())))
            for name, series in self.histograms.items():
                if series:
                    copied.append((name, [
                        (k, (list(s.counts), s.sum, s.count, s.min, s.max)
                         + ((s.take_exemplars(),) if exemplars else ()))
                        for k, s in series.items()]))
        for name, points in copied:
            yield self.specs[name], [(self._attributes(name, k), v) for k, v in points]

    def to_sdk_metrics(self) -> list[Metric]:
        """The store as OpenTelemetry SDK metric data (cumulative), ready for any exporter."""
        now = time.time_ns()
        start = self.start_time_ns
        metrics = []
        for spec, points in self.snapshot(exemplars=True):
            if spec.kind is Kind.COUNTER:
                data = Sum(
                    data_points=[NumberDataPoint(attrs, start, now, value) for attrs, value in points],
                    aggregation_temporality=_CUMULATIVE, is_monotonic=True)
            else:
                bounds = self.bounds[spec.name]
                data = Histogram(
                    data_points=[
                        HistogramDataPoint(attrs, start, now, count, total, counts, bounds, lo, hi,
                                           exemplars)
                        for attrs, (counts, total, count, lo, hi, exemplars) in points],
                    aggregation_temporality=_CUMULATIVE)
            metrics.append(Metric(spec.name, spec.description, spec.unit, data))
        return metrics


class AgentMetrics(MetricStore):
    """One method per agent event: every series that event touches, under one lock.

    Durations are in seconds (the catalogue's unit for every duration). `span` is the context
    of the event's own span, its histograms' exemplar (None: the current span's).
    """

    def tool_call(self, tool: str, domain: str, side_effect: str, error_type: str | None,
                  duration_s: float, *, span: trace.SpanContext | None = None) -> None:
        outcome = _TOOL_SUCCESS if error_type is None else _TOOL_ERROR
        with self.lock:
            self._add(catalogue.TOOL_CALLS, (tool, domain, side_effect, outcome))
            self._add(catalogue.DOMAIN_USAGE, (domain,))
            if error_type is not None:
                self._add(catalogue.TOOL_ERRORS, (tool, domain, error_type))
                self._add(catalogue.DOMAIN_ERRORS, (domain,))
            self._observe(catalogue.TOOL_CALL_DURATION, (tool, domain, outcome), duration_s,
                          span)

    def execution(self, profile: str, success: bool, duration_s: float, steps: int,
                  utilization: float | None, *,
                  span: trace.SpanContext | None = None) -> None:
        key = (_SUCCESS if success else _FAILURE, profile)
        with self.lock:
            self._add(catalogue.EXECUTIONS, key)
            self._observe(catalogue.EXECUTION_DURATION, key, duration_s, span)
            self._observe(catalogue.EXECUTION_STEPS, key, steps, span)
            if utilization is not None:
                self._observe(catalogue.BUDGET_UTILIZATION, (profile,), utilization, span)

    def approval(self, decision: str, wait_s: float, *,
                 span: trace.SpanContext | None = None) -> None:
        with self.lock:
            self._add(catalogue.APPROVALS, (decision,))
            if decision == _TIMEOUT:
                self._add(catalogue.APPROVAL_TIMEOUTS, ())
            self._observe(catalogue.APPROVAL_WAIT, (decision,), wait_s, span)

    def llm_call(self, operation: str, provider: str, model: str, error_type: str | None,
                 duration_s: float, input_tokens: int | None, output_tokens: int | None,
                 first_chunk_s: float | None, profile: str, cost: float | None, *,
                 span: trace.SpanContext | None = None) -> None:
        """One LLM call in both GenAI layouts, plus its cost (or its lack of a price)."""
        call = (operation, provider, model)
        timed = (*call, error_type)
        with self.lock:
            self._observe(catalogue.LLM_OPERATION_DURATION, timed, duration_s, span)
            self._observe(catalogue.LLM_INFERENCE_DURATION, timed, duration_s, span)
            if first_chunk_s is not None:
                self._observe(catalogue.LLM_TIME_TO_FIRST_CHUNK, call, first_chunk_s, span)
                self._observe(catalogue.LLM_INFERENCE_TIME_TO_FIRST_CHUNK, call, first_chunk_s,
                              span)
            for spec, token_type, tokens in (
                    (catalogue.LLM_INPUT_TOKENS, _INPUT, input_tokens),
                    (catalogue.LLM_OUTPUT_TOKENS, _OUTPUT, output_tokens)):
                if tokens is None:
                    continue
                self._observe(catalogue.LLM_TOKEN_USAGE, (*call, token_type), tokens, span)
                self._add(spec, (*call, _TEXT), tokens)
                self._add(catalogue.LLM_TOKENS, (provider, model, profile, token_type), tokens)
            if input_tokens is None and output_tokens is None:
                return  # no usage reported: nothing to price
            if cost is None:
                self._add(catalogue.LLM_COST_UNPRICED, (provider, model))
            else:
                self._add(catalogue.LLM_COST, (provider, model, profile), cost)
