"""Push vs scrape: the two metrics paths from collector to Prometheus, measured side by side.

    python -m bench.metrics_path [--json]

For each path (`push`: the collector sends OTLP into Prometheus' OTLP receiver, the default;
`scrape`: Prometheus scrapes the collector's prometheus exporter, collector/backends/
prometheus-scrape.yaml) the same real pipeline (our collector build, the pinned Prometheus,
1s scrape and rule intervals, agents exporting every 500 ms) is asked four questions:

- exactness: two short-lived agent processes born inside the window count 7 and 3 executions;
  what do `sum(increase(x[5m] anchored))` and plain `sum(increase(x[5m]))` say?
- freshness: how long from the end of an agent process until Prometheus shows its count?
- collector restart: the collector is SIGKILLed and restarted while an agent runs; does the
  window count still equal the agent's own count?
- dead instances: how long does a finished process's series stay visible to instant queries?

Ratios, not absolute times, are what to compare across machines; both paths run in the same
invocation on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from services.stack.components import REPO_ROOT
from services.stack.pipeline import METRICS_PATHS, Pipeline
from services.stack.process import wait_until
from services.stack.prometheus_api import value

COUNTER = "cugar_executions_total"
SETTLE_S = 60.0


def _agent(pipeline: Pipeline, service: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, **pipeline.agent_env(protocol="http/protobuf"),
           "OTEL_SERVICE_NAME": service}
    return subprocess.Popen([sys.executable, "-m", "services.agent", "run", "--time-scale", "0",
                             *args], env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def _finish(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=240)
    return json.loads([line for line in out.splitlines() if line.strip()][-1])


def _count(pipeline: Pipeline, promql: str) -> float | None:
    result = pipeline.query(promql)
    return value(result) if result else None


def exactness(pipeline: Pipeline) -> dict:
    for n in (7, 3):
        _finish(_agent(pipeline, "exactness", "--executions", str(n), "--seed", str(n)))
    selector = f'{COUNTER}{{job="exactness"}}'
    wait_until(lambda: _count(pipeline, f"sum({selector})") == 10, SETTLE_S, interval=0.2,
               what="both exactness runs in Prometheus")
    return {"truth": 10,
            "anchored": _count(pipeline, f"sum(increase({selector}[5m] anchored))"),
            "increase": _count(pipeline, f"sum(increase({selector}[5m]))")}


def freshness(pipeline: Pipeline, runs: int = 3) -> dict:
    delays = []
    for i in range(runs):
        service = f"fresh-{i}"
        truth = _finish(_agent(pipeline, service, "--executions", "5", "--seed", str(i)))
        ended = time.monotonic()
        wait_until(lambda: _count(pipeline, f'sum({COUNTER}{{job="{service}"}})')
                   == truth["executions"], SETTLE_S, interval=0.05, what=f"{service} count")
        delays.append(round(time.monotonic() - ended, 2))
    return {"seconds_after_exit": delays}


def collector_restart(pipeline: Pipeline) -> dict:
    agent = _agent(pipeline, "restart", "--rate", "20", "--duration", "12", "--seed", "5")
    time.sleep(4)
    collector = pipeline.process("collector")
    os.killpg(collector.pid, signal.SIGKILL)
    collector.stop()
    time.sleep(2)
    collector.start()
    truth = _finish(agent)
    selector = f'{COUNTER}{{job="restart"}}'
    try:
        wait_until(lambda: _count(pipeline, f"sum({selector})") == truth["executions"],
                   SETTLE_S, interval=0.2, what="the restart run's count")
    except TimeoutError:
        pass
    return {"truth": truth["executions"],
            "raw_sum": _count(pipeline, f"sum({selector})"),
            "anchored_window": _count(pipeline, f"sum(increase({selector}[5m] anchored))")}


def dead_instance(pipeline: Pipeline, limit_s: float = 420.0) -> dict:
    _finish(_agent(pipeline, "dead", "--executions", "3", "--seed", "9"))
    selector = f'{COUNTER}{{job="dead"}}'
    wait_until(lambda: _count(pipeline, f"sum({selector})") == 3, SETTLE_S, interval=0.2,
               what="the dead-instance run's count")
    ended = time.monotonic()
    while time.monotonic() - ended < limit_s and pipeline.query(selector):
        time.sleep(1)
    gone = time.monotonic() - ended
    return {"visible_for_s": round(gone) if gone < limit_s else f">{limit_s:.0f}"}


def measure(path: str, quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as work, Pipeline(
            Path(work), alertmanager=False, metrics_path=path) as pipeline:
        results = {"exactness": exactness(pipeline), "freshness": freshness(pipeline),
                   "collector_restart": collector_restart(pipeline)}
        if not quick:
            results["dead_instance"] = dead_instance(pipeline)
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true",
                        help="skip the dead-instance measurement (it waits up to 7 minutes)")
    args = parser.parse_args(argv)
    results = {path: measure(path, args.quick) for path in METRICS_PATHS}
    if args.json:
        print(json.dumps(results))
    else:
        for path, numbers in results.items():
            print(f"{path}:")
            for question, answer in numbers.items():
                print(f"  {question}: {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
