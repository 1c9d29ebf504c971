"""The /dashboard history's grid, and which of its points are gaps while data is missing."""

from __future__ import annotations

from services.api.freshness import Freshness
from services.api.history import MAX_POINTS, History, missing_since, step_for
from services.api.window import Window, iso


def test_the_grid_has_at_most_max_points_and_ends_at_the_window_end() -> None:
    for text, step, n in (("1m", 5, 12), ("5m", 5, 60), ("10m", 5, 120), ("1h", 30, 120),
                          ("24h", 900, 96), ("7m", 5, 84), ("15m", 10, 90), ("90s", 5, 18)):
        w = Window.parse(text)
        h = History(w, 1_767_225_601.7)
        assert (step_for(w), len(h.grid)) == (step, n), text
        assert len(h.grid) <= MAX_POINTS
        assert h.grid[-1] == 1_767_225_601.7
        assert h.grid[-1] - h.grid[0] == (n - 1) * step


def _fresh(**kw) -> Freshness:
    return Freshness(**kw)


def test_points_after_the_missing_data_are_gaps_even_with_values() -> None:
    at = 1_767_225_600.0
    h = History(Window.parse("1m"), at)
    h.values = {name: {round(t, 3): 0.5 for t in h.grid}
                for name in ("success_rate", "error_rate", "latency_p95_ms")}
    complete = h.section(_fresh())
    assert complete["partial"] is False and complete["missing_since"] is None
    assert all(p["success_rate"] == 0.5 for p in complete["points"])

    held = _fresh(missing=[{"job": "a", "instance": "1", "from": iso(at - 20), "to": iso(at)},
                           {"job": "b", "instance": "2", "from": iso(at - 10), "to": iso(at)}])
    section = h.section(held)
    assert section["partial"] is True and section["missing_since"] == iso(at - 20)
    for p, t in zip(section["points"], h.grid):
        expected = None if t > at - 20 else 0.5
        assert (p["success_rate"], p["error_rate"], p["latency_p95_ms"]) == (expected,) * 3


def test_a_broken_metrics_path_makes_points_gaps_from_its_since() -> None:
    at = 1_767_225_600.0
    broken = _fresh(degraded=[{"component": "collector", "reason": "down",
                               "since": iso(at - 30), "affects": ["metrics"]}])
    assert missing_since(broken, at) == at - 30
    unknown = _fresh(degraded=[{"component": "collector", "reason": "x", "since": None,
                                "affects": ["metrics"]}])
    assert missing_since(unknown, at) == at
    jaeger_only = _fresh(degraded=[{"component": "jaeger", "reason": "down",
                                    "since": iso(at - 30), "affects": ["traces"]}])
    assert missing_since(jaeger_only, at) is None  # traces only: the metrics are complete
