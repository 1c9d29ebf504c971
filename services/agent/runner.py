"""A whole run: P worker processes (spawned), each with its own telemetry and identity.

Each worker sets up telemetry itself (`otel.setup_telemetry()`, so the OTEL_* variables point it
at a collector) with a stable `service.instance.id` of `<base>-w<i>`, plays its share of the
executions, flushes and shuts telemetry down, then hands its ground-truth summary to the parent,
which sums them. One process (P=1) runs in the parent itself, with the same identity rule.

Stopping: SIGINT/SIGTERM (or the parent disappearing) makes every worker stop starting
executions and finish the in-flight ones without further waiting, flush, and report.

Gates (`Gates`, the CLI's --start-gate / --end-gate) let a driver hold every worker with its
telemetry up: before the first execution until one file exists, and after the last one until
another does. `make run`'s embedded mode uses them so that Prometheus scrapes each agent's
in-process /metrics before its first execution and after its last.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import queue
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.agent.scenario import SimulationConfig
from services.agent.stop import StopSignal
from services.agent.summary import merge
from services.agent.worker import Pacing, run_worker

log = logging.getLogger("services.agent")

INSTANCE_KEY = "service.instance.id"
STOP_GRACE_S = 30.0  # after a stop request, how long workers get to flush before SIGKILL
POLL_S = 0.2
GATE_TIMEOUT_S = 300.0  # a gate that never opens holds a worker this long at most
GATE_POLL_S = 0.05


@dataclass(frozen=True)
class Gates:
    """Files that hold each worker, telemetry set up: `start` before its first execution, `end`
    after its last (before the flush). A stop request or `timeout_s` ends either wait."""

    start: Path | None = None
    end: Path | None = None
    timeout_s: float = GATE_TIMEOUT_S


def wait_for_gate(path: Path | None, stop: StopSignal, timeout_s: float, what: str) -> None:
    """Return once `path` exists, a stop is requested or `timeout_s` passed (logged)."""
    if path is None:
        return
    deadline = time.monotonic() + timeout_s
    while not path.exists() and not stop.is_set():
        if time.monotonic() >= deadline:
            log.warning("%s: %s did not appear within %.0fs; going on", what, path, timeout_s)
            return
        time.sleep(GATE_POLL_S)


@dataclass
class RunResult:
    summary: dict[str, Any]
    exit_code: int
    errors: list[str] = field(default_factory=list)


def instance_base(run_id: str | None, env: dict[str, str] | None = None) -> str:
    """The operator's service.instance.id if given, else `<host>-<run id>`."""
    from otel.config import parse_resource_attributes

    env = os.environ if env is None else env
    given = parse_resource_attributes(env.get("OTEL_RESOURCE_ATTRIBUTES")).get(INSTANCE_KEY)
    if given:
        return given
    return f"{socket.gethostname()}-{run_id or uuid.uuid4().hex[:6]}"


def play_with_telemetry(config: SimulationConfig, pacing: Pacing, worker: int,
                        instance_id: str, stop: StopSignal,
                        gates: Gates = Gates()) -> dict[str, Any]:
    """Set telemetry up as worker `worker`, play its executions, flush and shut down."""
    from otel import setup_telemetry

    tel = setup_telemetry(resource_attributes={INSTANCE_KEY: instance_id})
    try:
        wait_for_gate(gates.start, stop, gates.timeout_s, f"worker {worker} start gate")
        started = time.monotonic()
        summary = asyncio.run(run_worker(tel.agent, config, pacing, worker, stop))
        elapsed = time.monotonic() - started
        wait_for_gate(gates.end, stop, gates.timeout_s, f"worker {worker} end gate")
    finally:
        tel.shutdown()
    log.info("worker %d (%s): %d executions in %.2fs; telemetry %s", worker, instance_id,
             summary["executions"], elapsed, tel.stats())
    return summary


def _worker_process(config: SimulationConfig, pacing: Pacing, worker: int, instance_id: str,
                    results: Any, shared_stop: Any, parent_pid: int, log_level: int,
                    gates: Gates) -> None:
    stop = StopSignal(shared_stop, parent_pid)
    stop.install_signal_handlers()
    configure_logging(log_level, f"w{worker}")
    try:
        summary = play_with_telemetry(config, pacing, worker, instance_id, stop, gates)
    except Exception as exc:  # reported to the parent, which exits non-zero with it
        log.exception("worker %d failed", worker)
        results.put((worker, "error", f"worker {worker}: {type(exc).__name__}: {exc}"))
        return
    results.put((worker, "ok", summary))


def configure_logging(level: int, tag: str = "") -> None:
    fmt = f"%(asctime)s cugar-agent{'[' + tag + ']' if tag else ''} %(levelname)s %(message)s"
    logging.basicConfig(level=level, format=fmt, force=True)  # stderr: stdout is the summary


def run(config: SimulationConfig, pacing: Pacing, run_id: str | None = None,
        log_level: int = logging.INFO, gates: Gates = Gates()) -> RunResult:
    base = instance_base(run_id)
    if pacing.processes == 1:
        return _run_inline(config, pacing, f"{base}-w0", gates)
    return _run_spawned(config, pacing, base, log_level, gates)


def _finish(parts: list[dict[str, Any]], stop: StopSignal, errors: list[str],
            processes: int) -> RunResult:
    interrupted = stop.is_set() or any(p.get("interrupted") for p in parts)
    summary = merge(parts)
    summary["processes"] = processes
    if interrupted:
        summary["interrupted"] = True
    if errors:
        summary["errors"] = errors
        return RunResult(summary, 1, errors)
    code = 128 + stop.signum if interrupted and stop.signum else (130 if interrupted else 0)
    return RunResult(summary, code, errors)


def _run_inline(config: SimulationConfig, pacing: Pacing, instance_id: str,
                gates: Gates) -> RunResult:
    stop = StopSignal()
    with stop.handling_signals():
        part = play_with_telemetry(config, pacing, 0, instance_id, stop, gates)
    return _finish([part], stop, [], 1)


def _run_spawned(config: SimulationConfig, pacing: Pacing, base: str,
                 log_level: int, gates: Gates) -> RunResult:
    ctx = multiprocessing.get_context("spawn")
    stop = StopSignal()
    with stop.handling_signals():
        return _supervise(config, pacing, base, log_level, ctx, stop, gates)


def _supervise(config: SimulationConfig, pacing: Pacing, base: str, log_level: int, ctx: Any,
               stop: StopSignal, gates: Gates = Gates()) -> RunResult:
    results = ctx.Queue()
    shared_stop = ctx.Event()
    procs = [ctx.Process(target=_worker_process, name=f"cugar-agent-w{i}", daemon=False,
                         args=(config, pacing, i, f"{base}-w{i}", results, shared_stop,
                               os.getpid(), log_level, gates))
             for i in range(pacing.processes)]
    for proc in procs:
        proc.start()
    parts: dict[int, dict[str, Any]] = {}
    errors: dict[int, str] = {}
    stop_sent_at: float | None = None
    try:
        while len(parts) + len(errors) < len(procs):
            if stop.is_set() and stop_sent_at is None:
                shared_stop.set()
                stop_sent_at = time.monotonic()
            exited = {i for i, p in enumerate(procs) if p.exitcode is not None}
            try:
                worker, status, payload = results.get(timeout=POLL_S)
            except queue.Empty:
                for i in exited - parts.keys() - errors.keys():
                    errors[i] = f"worker {i} exited with code {procs[i].exitcode} without a summary"
                if stop_sent_at is not None and time.monotonic() - stop_sent_at > STOP_GRACE_S:
                    for i in set(range(len(procs))) - parts.keys() - errors.keys():
                        errors[i] = f"worker {i} did not stop within {STOP_GRACE_S:.0f}s"
                continue
            (parts if status == "ok" else errors)[worker] = payload
    finally:
        _reap(procs)
    return _finish([parts[i] for i in sorted(parts)], stop,
                   [errors[i] for i in sorted(errors)], pacing.processes)


def _reap(procs: list[Any]) -> None:
    """Join every worker; any still running after a short wait is terminated, then killed."""
    deadline = time.monotonic() + 5.0
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
            proc.join(5.0)
        if proc.is_alive():
            proc.kill()
            proc.join()
