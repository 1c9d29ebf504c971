"""How much a counter grew inside a window: the one PromQL definition behind the recording rules
(services/stack/recording_rules.py), the API's /dashboard (services/api/summary.py) and the
Grafana panels that count over the picked range. docs/pipeline.md#counting-inside-a-window
explains each branch; monitoring/prometheus/tests/window_increase_test.yml proves it.

Plain increase() is not used for everything because it extrapolates to the window edges
(non-integer counts) and never counts the first sample of a series, so a series born inside
the window (a short-lived process, the first error of a process) would lose its birth value.
Per series, the first branch that has the series wins (PromQL `or` adds a right-hand series
only when no left-hand series has its labels, so the branches never double count):

1. born: not seen in the hour before the window, no reset inside it, and seen being born
   (Prometheus was scraping the collector successfully before the series' first sample) ->
   its last value (OpenTelemetry cumulative counters start at 0);
2. exact: no reset -> last value minus the value at the window start (the last value seen in
   the hour before it, so a scrape gap or collector restart across the start loses nothing),
   or minus its first value in the window when it has no start value (a fresh Prometheus
   facing a long-running fleet counts only the growth it saw, never lifetime totals);
3. increase(): everything with a reset (a process restarted under the same identity).
"""

from __future__ import annotations

COLLECTOR_JOB = "otel-collector"  # scrape job of the collector's prometheus exporter
# A series seen this long before the window is not born inside it: collector restarts and scrape
# gaps shorter than this never turn lifetime totals into a burst.
SEEN_BEFORE = "1h"


def window_increase(selector: str, window: str) -> str:
    """Per-series growth of counter `selector` inside `window` (a PromQL duration)."""
    x, w = selector, window
    last = f"last_over_time({x}[{w}])"
    start = f"last_over_time({x}[{SEEN_BEFORE}] offset {w})"
    first = f"min_over_time({x}[{w}])"  # without a reset, a counter's minimum is its first value
    reset = f"resets({x}[{w}]) > 0"
    up = f'up{{job="{COLLECTOR_JOB}"}}'
    successful_scrapes = f"scalar(min(sum_over_time({up}[{w}])))"
    return (
        f"(\n"
        f"    (\n"
        f"      {last}\n"
        f"        unless {start}\n"
        f"        unless {reset}\n"
        f"    )\n"
        f"    and (\n"
        # alive, and missing from an earlier successful scrape in the window
        f"        ({x} and count_over_time({x}[{w}]) < {successful_scrapes})\n"
        f"      or\n"
        # the collector was scraped successfully at the window start, without this series
        f"        ({last} and on() (min({up} offset {w}) == 1))\n"
        f"    )\n"
        f"  or\n"
        f"    ({last} - ({start} or {first}))\n"
        f"      unless {reset}\n"
        f"      unless {first} < {start}\n"  # a reset between the start and the first sample
        f"  or\n"
        f"    increase({x}[{w}])\n"
        f")"
    )


def sum_increase(selector: str, window: str, by: tuple[str, ...] = ()) -> str:
    """Fleet-wide growth of counter `selector` inside `window`, optionally kept by labels."""
    grouping = f" by ({', '.join(by)})" if by else ""
    return f"sum{grouping} {window_increase(selector, window)}"


def quantile_over_window(q: float, histogram: str, window: str) -> str:
    """Quantile `q` of the observations a histogram received inside `window`."""
    return f"histogram_quantile({q}, {sum_increase(histogram + '_bucket', window, ('le',))})"


def one_line(expr: str) -> str:
    """`expr` on one line (for JSON models such as Grafana panels); no string literal here
    contains whitespace, so collapsing it is safe."""
    return " ".join(expr.split()).replace("( ", "(").replace(" )", ")")
