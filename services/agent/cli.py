"""Command line: `python -m services.agent run ...` (see docs/agent.md)."""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from services.agent.scenario import SimulationConfig
from services.agent.worker import Pacing


def _key_value(text: str, form: str) -> tuple[str, float]:
    key, sep, number = text.partition("=")
    try:
        if not sep or not key:
            raise ValueError
        return key.strip(), float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {form}, got {text!r}") from None


def _fail_spec(text: str) -> tuple[str, float]:
    return _key_value(text, "DOMAIN=RATE or TOOL=RATE (e.g. intelligence=0.9)")


def _budget_usd_spec(text: str) -> tuple[str, float]:
    return _key_value(text, "PROFILE=USD (e.g. demo=0.05)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.agent",
                                     description="Simulated CUGAr sales agent workload.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="play executions and print the ground-truth summary (JSON)")
    mode = run.add_argument_group("load (either --executions, or --rate with --duration)")
    mode.add_argument("--executions", type=int, metavar="N", help="closed loop: N executions")
    mode.add_argument("--rate", type=float, metavar="R", help="open loop: R executions/second")
    mode.add_argument("--duration", type=float, metavar="SECONDS", help="open loop duration")
    run.add_argument("--processes", type=int, default=1, metavar="P",
                     help="worker processes, each its own telemetry instance (default 1)")
    run.add_argument("--concurrency", type=int, default=8, metavar="C",
                     help="closed loop: executions in flight per process (default 8)")
    run.add_argument("--seed", type=int, help="random seed (default: random, logged)")
    run.add_argument("--time-scale", type=float, default=1.0, metavar="X",
                     help="multiplies every simulated wait; 0 = no waiting (default 1.0)")
    run.add_argument("--latency-multiplier", type=float, default=1.0, metavar="M",
                     help="multiplies every tool latency (default 1.0)")
    run.add_argument("--fail", type=_fail_spec, action="append", default=[],
                     metavar="DOMAIN=RATE", help="set the error rate of a domain or tool "
                     "(failure injection; repeatable)")
    run.add_argument("--budget-usd", type=_budget_usd_spec, action="append", default=[],
                     metavar="PROFILE=USD", help="give a profile's executions a budget ceiling "
                     "in US dollars that their LLM calls spend (repeatable; flagged by "
                     "budget_warning / budget_exceeded, the budget guard stays in cost units)")
    run.add_argument("--profile", action="append", default=[], metavar="NAME",
                     help="restrict the profile mix (repeatable; default: all profiles)")
    run.add_argument("--approval-reject-rate", type=float, default=0.08, metavar="P")
    run.add_argument("--approval-timeout-rate", type=float, default=0.01, metavar="P")
    run.add_argument("--agent-name", default="cugar-sales")
    run.add_argument("--run-id", help="middle part of service.instance.id "
                     "(<host>-<run-id>-w<i>; default random) unless OTEL_RESOURCE_ATTRIBUTES "
                     "sets service.instance.id, which then becomes the prefix")
    run.add_argument("--start-gate", type=Path, metavar="PATH",
                     help="with telemetry up, wait until PATH exists before the first execution")
    run.add_argument("--end-gate", type=Path, metavar="PATH",
                     help="after the last execution, keep telemetry up (an embedded /metrics "
                     "keeps serving the final counts) until PATH exists")
    run.add_argument("--log-level", default="INFO",
                     choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.set_defaults(parser=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    try:
        config = SimulationConfig(
            seed=seed, error_rates=dict(args.fail), latency_multiplier=args.latency_multiplier,
            profiles=tuple(args.profile), budget_usd=dict(args.budget_usd),
            approval_reject_rate=args.approval_reject_rate,
            approval_timeout_rate=args.approval_timeout_rate)
        pacing = Pacing(executions=args.executions, rate=args.rate, duration=args.duration,
                        processes=args.processes, concurrency=args.concurrency,
                        time_scale=args.time_scale, agent_name=args.agent_name)
        # Checked here, once, so that a bad OTEL_* / CUGAR_* value stops the run before any
        # worker starts (otel.ConfigError, a ValueError naming the variable).
        from otel.config import load_settings

        load_settings()
    except ValueError as exc:
        args.parser.error(str(exc))  # exits 2 with the usage line

    from services.agent.runner import Gates, configure_logging, run

    level = getattr(logging, args.log_level)
    configure_logging(level)
    log = logging.getLogger("services.agent")
    log.info("run: %d executions over %d process(es), seed %d, time scale %g%s",
             pacing.total_executions(), pacing.processes, seed, pacing.time_scale,
             f", failure injection {dict(args.fail)}" if args.fail else "")
    result = run(config, pacing, run_id=args.run_id, log_level=level,
                 gates=Gates(args.start_gate, args.end_gate))
    for error in result.errors:
        log.error("%s", error)
    sys.stdout.write(json.dumps(result.summary) + "\n")
    sys.stdout.flush()
    return result.exit_code
