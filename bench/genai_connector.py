"""What the GenAI connector (signal_to_metrics/genai) costs the collector on ordinary spans.

    python -m bench.genai_connector [--duration 15] [--rounds 2]

The same real pipeline (our collector build, Prometheus, Jaeger) runs twice per round: as
shipped, and with the connector reduced to one metric whose condition never holds (the
baseline; a config override). Each time tests/support/otlp_raw.py sends as many non-GenAI
spans (500 per request, 256-byte attributes, 2 threads) as the collector accepts for
`--duration` seconds, and the collector's CPU time (utime + stime from /proc) is read before and
after. Prints one JSON line: CPU seconds per 10k spans with and without the connector (median
over the rounds) and their ratio. Both variants run in the same invocation: compare the ratio,
not absolute figures, across machines (the redaction processors dominate the absolute cost).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from services.stack.components import REPO_ROOT
from services.stack.pipeline import Pipeline

BASELINE = """\
connectors:
  signal_to_metrics/genai:
    spans:
      - name: bench.baseline.never
        conditions: ["false"]
        sum: {value: "1", monotonic: true}
"""


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(overrides: list[Path], duration_s: float) -> dict:
    with tempfile.TemporaryDirectory() as workdir, \
            Pipeline(workdir, alertmanager=False, collector_overrides=overrides) as pipeline:
        pid = pipeline.process("collector").pid
        before = _cpu_s(pid)
        out = subprocess.run(
            [sys.executable, "-m", "tests.support.otlp_raw", "blast", "--endpoint",
             pipeline.otlp_grpc_endpoint, "--duration", str(duration_s), "--threads", "2",
             "--spans", "500"], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
        used = _cpu_s(pid) - before
    accepted = json.loads(out.stdout.strip().splitlines()[-1])["spans_accepted"]
    return {"spans": accepted, "cpu_s_per_10k_spans": used / accepted * 1e4}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.genai_connector")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline.yaml"
        baseline.write_text(BASELINE)
        runs: dict[str, list[dict]] = {"with": [], "baseline": []}
        for _ in range(args.rounds):
            runs["with"].append(measure([], args.duration))
            runs["baseline"].append(measure([baseline], args.duration))
    med = {k: statistics.median(r["cpu_s_per_10k_spans"] for r in v) for k, v in runs.items()}
    print(json.dumps({
        "cpu_s_per_10k_spans_with_genai_connector": round(med["with"], 4),
        "cpu_s_per_10k_spans_baseline": round(med["baseline"], 4),
        "ratio": round(med["with"] / med["baseline"], 3),
        "spans_measured": sum(r["spans"] for v in runs.values() for r in v),
        "rounds": args.rounds, "duration_s": args.duration}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
