"""A small agent process for fault tests: our `otel` library, a known workload, its own ground truth.

    python -m tests.support.fault_agent --out result.json --stop-file stop [--executions N]

It plays executions (one tool call each, so exactly 2 spans: `invoke_agent` and `execute_tool`;
every 5th execution fails) one after the other, `--pace-ms` apart, until `--executions` were
played or `--stop-file` exists; then it shuts telemetry down and writes its result as JSON:
the executions by outcome, the spans it produced, `tel.stats()`, how long the slowest
execution call took (the agent's own work is empty: that time is all telemetry), how long
shutdown took, and any exception telemetry let through. `--progress` is rewritten every 20
executions (and every second while idle) with {"played": N, "stats": tel.stats()}. Exit status
0, or 1 when anything raised.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from pathlib import Path

SPANS_PER_EXECUTION = 2
FAIL_EVERY = 5


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stop-file", type=Path, required=True)
    parser.add_argument("--progress", type=Path)
    parser.add_argument("--executions", type=int, default=10**9)
    parser.add_argument("--pace-ms", type=float, default=10.0)
    args = parser.parse_args()

    from otel import setup_telemetry

    errors: list[str] = []
    outcomes = {"success": 0, "failure": 0}
    slowest = 0.0
    tel = setup_telemetry()
    played = 0

    def progress() -> None:
        if args.progress is not None:
            _write(args.progress, json.dumps({"played": played, "stats": tel.stats()}))

    try:
        while played < args.executions and not args.stop_file.exists():
            fail = played % FAIL_EVERY == FAIL_EVERY - 1
            started = time.perf_counter()
            with tel.agent.execution(profile="smb", agent_name="fault-agent") as ex:
                with ex.tool_call("crm_lookup", domain="intelligence", side_effect="read-only"):
                    pass
                if fail:
                    ex.fail("no lead")
            slowest = max(slowest, time.perf_counter() - started)
            outcomes["failure" if fail else "success"] += 1
            played += 1
            if played % 20 == 0:
                progress()
            time.sleep(args.pace_ms / 1000)
    except Exception:  # noqa: BLE001 - the result says what telemetry let through
        errors.append(traceback.format_exc())
    # Holds until the stop file exists, so that the test decides when the last export happens.
    while not args.stop_file.exists():
        progress()
        for _ in range(20):
            if args.stop_file.exists():
                break
            time.sleep(0.05)
    shutdown_started = time.monotonic()
    try:
        tel.shutdown()
    except Exception:  # noqa: BLE001
        errors.append(traceback.format_exc())
    result = {
        "executions": outcomes,
        "spans": SPANS_PER_EXECUTION * played,
        "stats": tel.stats(),
        "slowest_execution_ms": slowest * 1000,
        "shutdown_s": time.monotonic() - shutdown_started,
        "errors": errors,
    }
    _write(args.out, json.dumps(result))
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
