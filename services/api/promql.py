"""PromQL for counting exactly what happened inside a window."""

from __future__ import annotations


def window_increase(selector: str, window: str) -> str:
    """Per-series increase of counter `selector` over `window`, without extrapolation.

    increase() extrapolates to the window edges and ignores the first sample of a series born
    inside the window, so it neither matches the agent's own bookkeeping nor gives whole
    counts. Instead: the last value in the window minus the value at the window start (0 for
    a series born inside the window: OpenTelemetry cumulative counters start at 0). A series
    that reset inside the window (a process restarted under the same identity) falls back to
    increase(), which handles resets.
    """
    last = f"last_over_time({selector}[{window}])"
    exact = f"({last} - ({selector} offset {window} or {last} * 0))"
    return f"({exact} unless resets({selector}[{window}]) > 0 or increase({selector}[{window}]))"


def sum_increase(selector: str, window: str, by: tuple[str, ...] = ()) -> str:
    grouping = f" by ({', '.join(by)})" if by else ""
    return f"sum{grouping} ({window_increase(selector, window)})"


def quantile_over_window(q: float, histogram: str, window: str) -> str:
    return f"histogram_quantile({q}, {sum_increase(histogram + '_bucket', window, ('le',))})"
