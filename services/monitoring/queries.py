"""The PromQL of CUGAr monitoring: one short function per kind of question, shared by the
recording and alert rules (rules.py), the Grafana dashboards (dashboards.py) and the API's
/dashboard (services/api/summary.py). Functions take catalogue specs (otel/catalogue.py), never
pasted names, and return one expression an SRE can check at a glance.

Counting inside a window is Prometheus' own `increase(x[w] anchored)`: no extrapolation (whole
numbers), counter resets handled, and the value at the window start is the last sample at or
before it (within the lookback delta) or else the first sample inside the window. With
created-timestamp-zero-ingestion, a series born inside the window has a 0 sample at its start,
so its whole value counts. docs/pipeline.md#counting-inside-a-window lists the cases and
limits; monitoring/prometheus/tests/counting_test.yml proves them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from otel.catalogue import RESOURCE_LABELS, Kind, MetricSpec

from . import tunables

Matchers = Sequence[str]

_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def eq(label: str, value: str) -> str:
    """The matcher `label="value"`."""
    return f'{label}="{value}"'


def like(label: str, pattern: str) -> str:
    """The regex matcher `label=~"pattern"` (Grafana variables: `like("profile", "$profile")`)."""
    return f'{label}=~"{pattern}"'


def _label(matcher: str) -> str:
    """The label a matcher tests (`a="x"`, `a!="x"`, `a=~"x"`, `a!~"x"`)."""
    return re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", matcher).group(1)


def _braces(matchers: Matchers) -> str:
    return "{" + ", ".join(matchers) + "}" if matchers else ""


def _by(labels: Sequence[str]) -> str:
    return f" by ({', '.join(labels)}) " if labels else ""


def select(spec: MetricSpec, suffix: str = "", matchers: Matchers = ()) -> str:
    """The series selector of a catalogue metric: `cugar_executions_total{outcome="success"}`.
    Raises on a label the metric does not carry (a typo would select nothing, silently)."""
    if (suffix in _HISTOGRAM_SUFFIXES) != (spec.kind is Kind.HISTOGRAM):
        raise ValueError(f"{spec.name}: suffix {suffix!r} does not fit a {spec.kind.value}")
    known = set(spec.labels) | set(RESOURCE_LABELS.values()) | ({"le"} if suffix == "_bucket" else set())
    unknown = [m for m in matchers if _label(m) not in known]
    if unknown:
        raise ValueError(f"{spec.prometheus_name} has no label for {unknown}")
    own = [tunables.CUGAR_SELECTOR] if tunables.CUGAR_SELECTOR else []
    return spec.series(suffix) + _braces([*own, *matchers])


def select_name(name: str, selector: str = "") -> str:
    """A selector of a series outside the catalogue (collector self-metrics, `up`)."""
    return name + (f"{{{selector}}}" if selector else "")


def increase(selector: str, window: str) -> str:
    """Per-series growth of a counter inside `window`, as a whole number."""
    return f"increase({selector}[{window}] anchored)"


def count(spec: MetricSpec, window: str, by: Sequence[str] = (), suffix: str = "",
          matchers: Matchers = ()) -> str:
    """How much a counter (or a histogram's `_bucket` / `_sum` / `_count`) grew inside `window`,
    summed over the fleet, kept by `by`: `sum by (outcome) (increase(x[5m] anchored))`."""
    return f"sum{_by(by)}({increase(select(spec, suffix, matchers), window)})"


def ratio(numerator: str, denominator: str) -> str:
    """`numerator / denominator`, ABSENT when the denominator is 0 (never a fake 0)."""
    return f"{numerator}\n/\n({denominator} > 0)"


def or_zero(expr: str) -> str:
    """`expr`, or 0 when it has no series (none of that kind in the window is a true 0)."""
    return f"({expr} or on() vector(0))"


def scaled(expr: str, factor: float) -> str:
    return expr if factor == 1 else f"{factor:g} * {expr}"


def share(spec: MetricSpec, label: str, value: str, window: str,
          matchers: Matchers = ()) -> str:
    """The fraction of a counter's growth in `window` whose `label` is `value` (absent when it
    did not grow): the success rate is `share(EXECUTIONS, "outcome", "success", "5m")`."""
    return fraction(spec, [eq(label, value)], window, matchers)


def fraction(spec: MetricSpec, where: Matchers, window: str, matchers: Matchers = (),
             suffix: str = "") -> str:
    """The fraction of a counter's growth in `window` that matches `where` (absent when it did
    not grow): failed LLM calls are `fraction(LLM_OPERATION_DURATION, ['error_type!=""'], "5m",
    suffix="_count")`."""
    return ratio(or_zero(count(spec, window, suffix=suffix, matchers=[*matchers, *where])),
                 count(spec, window, suffix=suffix, matchers=matchers))


def ratio_by(numerator: str, denominator: str) -> str:
    """`numerator / denominator` per group of the same `by` labels: a group the denominator
    has and the numerator lacks is 0 (no errors among its calls), one whose denominator is 0
    is absent (idle)."""
    return f"(\n  {numerator}\nor\n  {denominator} * 0\n)\n/\n({denominator} > 0)"


def or_zero_while(expr: str, traffic: str) -> str:
    """`expr`, or 0 when it has no series while `traffic` has some (no errors among the calls
    is a true 0); absent when `traffic` is absent too (idle)."""
    return f"{expr}\nor on()\n{traffic} * 0"


def or_zero_by(expr: str, traffic: str) -> str:
    """`expr`, with 0 for each group (same `by` labels) that `traffic` has and `expr` lacks:
    tool errors by tool, 0 for the tools that were called without an error."""
    return f"{expr}\nor\n{traffic} * 0"


def per_second(spec: MetricSpec, window: str, by: Sequence[str] = (), suffix: str = "",
               matchers: Matchers = ()) -> str:
    """Per-second rate of a catalogue counter (or a histogram's `_count` / `_sum`) in `window`,
    summed and kept by `by`: for charts (`count` is for whole numbers in a window)."""
    return f"sum{_by(by)}(rate({select(spec, suffix, matchers)}[{window}]))"


def mean(spec: MetricSpec, window: str, matchers: Matchers = (), factor: float = 1) -> str:
    """Mean observation of a histogram in `window` (times `factor`, e.g. 1000 for s -> ms)."""
    return ratio(scaled(count(spec, window, suffix="_sum", matchers=matchers), factor),
                 count(spec, window, suffix="_count", matchers=matchers))


def quantile_of(q: float, buckets: str, observations: str, factor: float = 1,
                by: Sequence[str] = ()) -> str:
    """Quantile `q` from bucket increases kept by `le` (and `by`), times `factor`; absent
    (never NaN) where `observations`, the matching `+Inf` increase, is 0."""
    on = f"on({', '.join(by)})"
    return f"{scaled(f'histogram_quantile({q:g}, {buckets})', factor)}\nand {on} ({observations} > 0)"


def quantile(q: float, spec: MetricSpec, window: str, matchers: Matchers = (),
             factor: float = 1, by: Sequence[str] = ()) -> str:
    """Quantile `q` of the observations a histogram received inside `window`."""
    return quantile_of(
        q, count(spec, window, by=("le", *by), suffix="_bucket", matchers=matchers),
        count(spec, window, by=by, suffix="_bucket", matchers=[*matchers, eq("le", "+Inf")]),
        factor, by)


def rate(name: str, window: str, by: Sequence[str] = (), selector: str = "") -> str:
    """Per-second rate of a counter outside the catalogue, summed and kept by `by`."""
    return f"sum{_by(by)}(rate({select_name(name, selector)}[{window}]))"


def per_signal(names: dict[str, str], query) -> str:
    """One series per telemetry signal (label `signal`): `query(name)` for each signal's
    counter, labelled with the signal it counts."""
    parts = [f'label_replace({query(name)}, "signal", "{signal}", "", "")'
             for signal, name in names.items()]
    return "\n  or ".join(parts)


def keep(by: Sequence[str], expr: str, aggregation: str = "sum") -> str:
    return f"{aggregation}{_by(by)}(\n  {expr}\n)"


# The collector's own metrics (its telemetry endpoint, scraped; no type or unit suffixes: the
# collector's Prometheus reader runs without them), by signal.
RECEIVER_ACCEPTED = {"metrics": "otelcol_receiver_accepted_metric_points",
                     "traces": "otelcol_receiver_accepted_spans"}
RECEIVER_REFUSED = {"traces": "otelcol_receiver_refused_spans",
                    "metrics": "otelcol_receiver_refused_metric_points"}
EXPORTER_SENT = {"metrics": "otelcol_exporter_sent_metric_points",
                 "traces": "otelcol_exporter_sent_spans"}
EXPORTER_SEND_FAILED = {"traces": "otelcol_exporter_send_failed_spans",
                        "metrics": "otelcol_exporter_send_failed_metric_points"}
EXPORTER_QUEUE_SIZE = "otelcol_exporter_queue_size"
EXPORTER_QUEUE_CAPACITY = "otelcol_exporter_queue_capacity"
PROCESSOR_INCOMING = "otelcol_processor_incoming_items"
PROCESSOR_OUTGOING = "otelcol_processor_outgoing_items"
# collector/cardinalityguard: points whose label value became `other` (or lost an attribute the
# catalogue does not list), by metric, attribute and sending service.
CARDINALITY_OVERFLOW = "otelcol_cardinality_guard_overflow_points"
# The filter/invalid processor: points dropped as invalid (NaN/Inf, negative counters, delta
# temporality, malformed histograms), label `filter` = the processor's id.
FILTERED_POINTS = "otelcol_processor_filter_datapoints_filtered"
UP = "up"
SCRAPE_DURATION = "scrape_duration_seconds"

# Alert delivery. Alertmanager (scrape job alertmanager; labels integration, receiver_name with
# --enable-feature=receiver-name-in-metrics, and `reason` on the failures) counts every
# notification it attempts and every one that failed after its retries. Prometheus' notifier
# (job prometheus; label `alertmanager`, its URL; one send loop per Alertmanager, no retry: a
# failed batch is dropped and the alerts go again at the next resend) counts the alerts sent
# successfully (in 3.13 `sent` counts successes only), those whose send failed, those dropped,
# and the Alertmanagers it currently knows.
AM_NOTIFICATIONS = "alertmanager_notifications_total"
AM_NOTIFICATIONS_FAILED = "alertmanager_notifications_failed_total"
AM_REQUESTS_FAILED = "alertmanager_notification_requests_failed_total"
PROM_NOTIFICATIONS_SENT = "prometheus_notifications_sent_total"
PROM_NOTIFICATIONS_ERRORS = "prometheus_notifications_errors_total"
PROM_NOTIFICATIONS_DROPPED = "prometheus_notifications_dropped_total"
PROM_ALERTMANAGERS_DISCOVERED = "prometheus_notifications_alertmanagers_discovered"
ALERT_DELIVERY_METRICS = {
    "alertmanager": frozenset({AM_NOTIFICATIONS, AM_NOTIFICATIONS_FAILED, AM_REQUESTS_FAILED}),
    "prometheus": frozenset({PROM_NOTIFICATIONS_SENT, PROM_NOTIFICATIONS_ERRORS,
                             PROM_NOTIFICATIONS_DROPPED, PROM_ALERTMANAGERS_DISCOVERED}),
}


def collector(name: str) -> str:
    return select_name(name, tunables.COLLECTOR_SELECTOR)


def alertmanager(name: str) -> str:
    return select_name(name, tunables.ALERTMANAGER_SELECTOR)


def prometheus(name: str) -> str:
    return select_name(name, tunables.PROMETHEUS_SELECTOR)


def queue_fill(by: Sequence[str]) -> str:
    """How full each exporter's sending queue is (0..1; absent without a capacity)."""
    return (f"max{_by(by)}(\n  {collector(EXPORTER_QUEUE_SIZE)}"
            f" / ({collector(EXPORTER_QUEUE_CAPACITY)} > 0)\n)")


def one_line(expr: str) -> str:
    """`expr` on one line (for JSON models such as Grafana panels); no string literal here
    contains whitespace, so collapsing it is safe."""
    return " ".join(expr.split()).replace("( ", "(").replace(" )", ")")


# --- freshness: is the data there, and since when is it not (the API's /dashboard status and
# the pipeline-health dashboard's "Down or stale" row) ------------------------------------------
SOURCE_LABELS = ("job", "instance")  # one agent process: service.name, service.instance.id


def last_sample(spec: MetricSpec, by: Sequence[str] = SOURCE_LABELS) -> str:
    """When each source's newest sample of `spec` was taken (unix seconds): `timestamp()` of a
    plain selector is the sample's own time (pushed points carry the agent's export time), not
    the evaluation time. Within the lookback delta (5m) only."""
    return f"max{_by(by)}(timestamp({select(spec)}))"


def last_sample_within(spec: MetricSpec, window: str, step: str,
                       by: Sequence[str] = SOURCE_LABELS) -> str:
    """`last_sample` for sources silent longer than the lookback delta too: the newest sample
    time seen at any `step` (< 5m) inside `window`, still the sample's own time."""
    return f"max_over_time({last_sample(spec, by)}[{window}:{step}])"


def samples_in(spec: MetricSpec, window: str, by: Sequence[str] = SOURCE_LABELS) -> str:
    """How many samples each source's busiest series of `spec` got inside `window` (every
    series of a source arrives with each export, so this counts the source's exports)."""
    return f"max{_by(by)}(count_over_time({select(spec)}[{window}]))"


def first_sample_within(spec: MetricSpec, window: str,
                        by: Sequence[str] = SOURCE_LABELS) -> str:
    """When each source's oldest sample of `spec` inside `window` was taken, to the
    millisecond (Prometheus' `ts_of_first_over_time`, feature promql-experimental-functions)."""
    return f"min{_by(by)}(ts_of_first_over_time({select(spec)}[{window}]))"


def age(expr: str) -> str:
    """Seconds since the time `expr` gives (a `last_sample`), at the evaluation time."""
    return f"time() - {expr}"


def down(selector: str = "") -> str:
    """Scrape targets whose last scrape failed."""
    return f"{select_name(UP, selector)} == 0"


def last_good_scrape(selector: str = "") -> str:
    """When each target was last scraped successfully (within an hour), to the subquery's step:
    for a target that is down, since when (the API's /dashboard reads the raw samples)."""
    return f"max_over_time(timestamp({select_name(UP, selector)} == 1)[1h:])"


def down_seconds(selector: str = "") -> str:
    """Per target: 0 while its last scrape succeeded, else the seconds since the last good one."""
    return (f"({age(last_good_scrape(selector))}) and on(job, instance) ({down(selector)})"
            f"\nor on(job, instance)\n{select_name(UP, selector)} * 0")


def grew(name: str, window: str, selector: str = "") -> str:
    """Series of a counter outside the catalogue that grew inside `window` (by how much)."""
    return f"increase({select_name(name, selector)}[{window}]) > 0"
