"""The /dashboard `history` section: the golden signals the page charts (success rate, error
rate, latency p95), over the whole window, from Prometheus range queries.

Points lie on a grid: every `step_s` back from the window end (the last point is the end
itself, so the newest data is in it), at most MAX_POINTS of them, the step a round number of
seconds. Each point
is computed like the summary's numbers, over the RANGE seconds up to it (the step, but at least
RANGE_FLOOR_S: OpenTelemetry's default metric export interval, so each point holds an export of
every healthy source), with the same query functions (services/monitoring/queries.py).

A point is null, never 0, where it has no meaning: no execution finished in its range (idle,
or a hole in the data), or its range reaches into the time whose data has not arrived while the
window is partial (freshness.py: a source's data held up since its last sample, or the metrics
path broken since its `since`). Every grid point is listed, null or not: a gap is a gap.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime

from otel.catalogue import EXECUTION_DURATION, EXECUTIONS, LATENCY_PERCENTILES, OUTCOME
from services.monitoring.queries import quantile, share

from .freshness import METRICS_PATH, Freshness
from .prometheus import PrometheusClient
from .window import Window, iso

MAX_POINTS = 120
STEPS_S = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800)  # 24h / 900 s = 96 points
RANGE_FLOOR_S = 60
MS_PER_S = 1000
SIGNALS = ("success_rate", "error_rate", "latency_p95_ms")


def step_for(window: Window) -> int:
    """Seconds between points: the first of STEPS_S that keeps the window to MAX_POINTS (a
    round step divides the usual windows: their grid spans the whole window)."""
    need = math.ceil(window.seconds / MAX_POINTS)
    return next(s for s in STEPS_S if s >= need)


def _queries(range_s: int) -> dict[str, str]:
    w = f"{range_s}s"
    return {"success_rate": share(EXECUTIONS, OUTCOME, "success", w),
            "error_rate": share(EXECUTIONS, OUTCOME, "failure", w),
            "latency_p95_ms": quantile(LATENCY_PERCENTILES["p95"], EXECUTION_DURATION, w,
                                       factor=MS_PER_S)}


def _unix(text: str | None) -> float | None:
    return None if text is None else datetime.fromisoformat(text).timestamp()


def missing_since(fresh: Freshness, end: float) -> float | None:
    """From when the window's data is incomplete (None: complete): the earliest last sample of
    a source whose data is held up, or since when the metrics path is broken (unknown: the
    window end)."""
    if not fresh.partial:
        return None
    times = [_unix(m["from"]) for m in fresh.missing]
    times += [_unix(d["since"]) or end for d in fresh.degraded if d["component"] == METRICS_PATH]
    return min(times, default=end)


class History:
    """The grid and the range queries of one window; `section(fresh)` builds the JSON."""

    def __init__(self, window: Window, at: float) -> None:
        self.step = step = step_for(window)
        self.range_s = max(step, RANGE_FLOOR_S)
        self.at = at
        self.last = round(at, 3)  # Prometheus evaluates at whole milliseconds
        self.first = self.last - (window.seconds // step - 1) * step
        self.grid = [self.first + i * step for i in range(window.seconds // step)]
        self.values: dict[str, dict[float, float | None]] = {}

    async def fetch(self, prom: PrometheusClient) -> None:
        queries = _queries(self.range_s)
        results = await asyncio.gather(*(prom.query_range(expr, self.first, self.last, self.step)
                                         for expr in queries.values()))
        for name, series in zip(queries, results):
            self.values[name] = {round(t, 3): v for s in series for t, v in s.points}

    def section(self, fresh: Freshness) -> dict:
        since = missing_since(fresh, self.at)
        points = []
        for t in self.grid:
            held_up = since is not None and t > since
            points.append({"time": iso(t), **{
                name: None if held_up else self.values[name].get(round(t, 3))
                for name in SIGNALS}})
        return {"start": iso(self.first - self.step), "end": iso(self.last),
                "step_s": self.step, "range_s": self.range_s, "partial": fresh.partial,
                "missing_since": None if since is None else iso(since), "points": points}
