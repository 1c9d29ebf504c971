"""The pipeline benchmark (bench/pipeline.py) runs on the real processes and reports every key,
with nothing lost and sane numbers. Timings are for docs/benchmarks.md, not asserted here."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from services.stack import components
from tests.support import require

ROOT = Path(__file__).resolve().parents[1]
RATES = ("collector_spans_per_s", "collector_points_per_s", "agent_executions_per_s")
COSTS = ("collector_cpu_pct_per_10k_spans", "collector_cpu_pct_per_10k_points",
         "collector_rss_mib", "baseline_cpu_pct_per_10k_spans", "freshness_p50_s",
         "freshness_p95_s", "export_interval_s", "agent_p99_us_collector_up",
         "agent_p99_us_collector_down")


def test_quick_run_reports_every_key_with_nothing_lost():
    for component in (components.COLLECTOR, components.PROMETHEUS, components.JAEGER,
                      components.TELEMETRYGEN):
        require(component)
    out = subprocess.run([sys.executable, "-m", "bench.pipeline", "--quick", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout[-2000:]
    result = json.loads(lines[0])

    assert result["lost"] == 0, (result["agent_steps"], result["steps"])
    assert result["collector_lost"] == 0, result["steps"]
    for key in RATES + COSTS:
        assert isinstance(result[key], (int, float)) and math.isfinite(result[key]), key
        assert result[key] > 0, (key, result["steps"])
    # Both collectors were measured side by side, for both signals, and every step lost nothing.
    assert {(s["target"], s["signal"]) for s in result["steps"]} == {
        (t, sig) for t in ("baseline", "ours") for sig in ("spans", "points")}
    assert all(s["lost"] == 0 for s in result["steps"]), result["steps"]
    assert result["freshness_p50_s"] <= result["freshness_p95_s"]
    assert set(result["targets_met"]) >= {"spans_rate", "points_rate", "zero_loss", "freshness"}
