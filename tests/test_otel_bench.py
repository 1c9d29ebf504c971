"""The overhead benchmark runs and reports every variant (timings are for docs, not tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_emits_one_json_object_with_all_keys():
    out = subprocess.run(
        [sys.executable, "-m", "bench.overhead", "--json", "--rounds", "2", "--executions", "30"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    for key in ("none_us", "ours_full_us", "ours_metrics_only_us", "naive_otel_us",
                "prometheus_client_us"):
        assert isinstance(result[key], float) and result[key] > 0, key
    for key in ("naive_otel_over_ours_full", "prometheus_client_over_ours_metrics_only",
                "target_full_met", "target_metrics_only_met"):
        assert key in result


def test_benchmark_rejects_bad_arguments():
    out = subprocess.run([sys.executable, "-m", "bench.overhead", "--rounds", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--rounds" in out.stderr
