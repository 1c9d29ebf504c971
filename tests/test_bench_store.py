"""The store benchmark (bench/store.py) runs the single Prometheus and the Thanos store side by
side on real processes and reports every key, with every sample counted in both. Timings are for
docs/benchmarks.md, not asserted here."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from services.stack import components
from tests.support import require

ROOT = Path(__file__).resolve().parents[1]
COSTS = ("prometheus_cpu_pct_per_10k_samples", "store_cpu_pct_per_10k_samples",
         "prometheus_agent_cpu_pct_per_10k_samples", "router_cpu_pct_per_10k_samples",
         "ingestor_cpu_pct_per_10k_samples", "prometheus_rss_mib", "ingestor_rss_mib",
         "store_vs_prometheus")


def test_quick_run_counts_every_sample_in_both_and_reports_every_cost():
    require(components.PROMETHEUS)
    require(components.THANOS)
    out = subprocess.run([sys.executable, "-m", "bench.store", "--quick", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout[-2000:]
    result = json.loads(lines[0])

    assert result["lost"] == {"prometheus": 0, "store": 0}, result
    assert result["series_seen"] == {"prometheus": result["series"], "store": result["series"]}
    assert result["send_failures"] == []
    assert result["samples_per_s"] >= 0.9 * result["series"], result
    for key in COSTS:
        assert isinstance(result[key], (int, float)) and math.isfinite(result[key]), key
        assert result[key] > 0, (key, result)
