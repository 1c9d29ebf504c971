"""An agent process with a few deliberately slow executions among fast ones, and its ground truth.

    python -m tests.support.slow_agent --fast 20 --slow 0.3,0.6,1.2 --agent-name slow-agent

It runs our `otel` library against the OTEL_* configuration it is given: `--fast` executions
with one instant tool call each, then one execution per `--slow` duration (seconds, spent
inside its tool call) marked with the span attribute `test.slow=true`. It prints, as JSON, the
trace id and measured duration of every slow execution, after shutting telemetry down (so
everything was exported).
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast", type=int, default=20)
    parser.add_argument("--slow", default="0.3,0.6,1.2")
    parser.add_argument("--agent-name", default="slow-agent")
    args = parser.parse_args()

    from otel import setup_telemetry

    tel = setup_telemetry()
    slow = []
    for _ in range(args.fast):
        with tel.agent.execution(profile="smb", agent_name=args.agent_name) as ex:
            with ex.tool_call("crm_lookup", domain="intelligence"):
                pass
    for seconds in (float(s) for s in args.slow.split(",") if s):
        started = time.perf_counter()
        with tel.agent.execution(profile="smb", agent_name=args.agent_name) as ex:
            ex.set_attribute("test.slow", True)
            with ex.tool_call("crm_lookup", domain="intelligence"):
                time.sleep(seconds)
        slow.append({"trace_id": ex.trace_id, "seconds": time.perf_counter() - started})
    tel.shutdown()
    print(json.dumps({"fast": args.fast, "slow": slow}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
