"""Shared by the fault tests (tests/test_faults_*.py): agent processes with their ground truth
(tests/support/fault_agent.py) and the checks every fault scenario ends with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from services.stack import components
from services.stack.pipeline import Pipeline
from services.stack.probe import scrape
from services.stack.process import ManagedProcess, wait_until
from tests.support import require

REPO_ROOT = Path(__file__).resolve().parents[2]

# An execution call (with its tool call) never waits for the network: the agent's own work is
# empty, so this bounds what telemetry adds, with room for a loaded 2-core machine. An export
# that hangs takes seconds (OTEL_EXPORTER_OTLP_TIMEOUT), far above it.
CALL_BOUND_MS = 500
SETTLE_S = 45
AGENT_EXIT_S = 60


@contextmanager
def fault_pipeline(workdir: Path) -> Iterator[Pipeline]:
    """Collector, Prometheus and Jaeger (no Alertmanager: these tests send no alerts)."""
    for component in (components.COLLECTOR, components.PROMETHEUS, components.JAEGER):
        require(component)
    with Pipeline(workdir, alertmanager=False) as p:
        yield p


class Agents:
    """`count` fault_agent processes of service `service` pointed at `env`'s endpoint."""

    def __init__(self, workdir: Path, service: str, env: Mapping[str, str], count: int = 1,
                 executions: int | None = None, pace_ms: float = 10.0) -> None:
        self.workdir = workdir
        self.service = service
        self.stop_file = workdir / f"{service}.stop"
        self.procs: list[tuple[subprocess.Popen, Path, Path]] = []
        for i in range(count):
            out, progress = workdir / f"{service}-{i}.json", workdir / f"{service}-{i}.progress"
            cmd = [sys.executable, "-m", "tests.support.fault_agent", "--out", str(out),
                   "--stop-file", str(self.stop_file), "--progress", str(progress),
                   "--pace-ms", str(pace_ms)]
            if executions is not None:
                cmd += ["--executions", str(executions)]
            full_env = {**os.environ, **env, "OTEL_SERVICE_NAME": service,
                        "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={service}-{i}"}
            log = (workdir / f"{service}-{i}.log").open("wb")
            self.procs.append((subprocess.Popen(cmd, env=full_env, cwd=REPO_ROOT, stdout=log,
                                                stderr=subprocess.STDOUT), out, progress))
            log.close()

    def progress(self) -> list[dict]:
        """Each agent's latest {"played": N, "stats": tel.stats()} ({} before its first)."""
        out = []
        for _, _, progress in self.procs:
            try:
                out.append(json.loads(progress.read_text()))
            except (OSError, ValueError):
                out.append({})
        return out

    def played(self) -> int:
        return sum(p.get("played", 0) for p in self.progress())

    def wait_played(self, n: int, timeout: float = 60) -> None:
        wait_until(lambda: self.played() >= n, timeout, interval=0.05,
                   what=f"{self.service} agents to play {n} executions")

    def wait_delivered_again(self, more: int = 2, timeout: float = 60) -> None:
        """Until every agent has exported metrics `more` more times than now."""
        before = [p["stats"]["metric_exports"] for p in self.progress()]
        wait_until(lambda: all(p["stats"]["metric_exports"] >= b + more
                               for p, b in zip(self.progress(), before)), timeout,
                   interval=0.1, what=f"{self.service} agents to deliver metrics again")

    def wait_stats(self, what: str, predicate, timeout: float = 60) -> None:
        """Until `predicate(stats)` holds for every agent's latest tel.stats()."""
        wait_until(lambda: all(predicate(p.get("stats") or {}) for p in self.progress()),
                   timeout, interval=0.1, what=f"{self.service} agents: {what}")

    def finish(self) -> list[dict]:
        """Stop them (they flush and shut telemetry down) and return their results."""
        self.stop_file.touch()
        results = []
        for i, (proc, out, _) in enumerate(self.procs):
            try:
                code = proc.wait(timeout=AGENT_EXIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail(f"agent {i} did not exit within {AGENT_EXIT_S}s after stop")
            log = (self.workdir / f"{self.service}-{i}.log").read_text(errors="replace")
            assert code == 0, f"agent {i} exited {code}:\n{log[-3000:]}"
            assert "Traceback" not in log, log[-3000:]
            results.append(json.loads(out.read_text()))
        for r in results:
            assert r["errors"] == [], r["errors"]
        return results

    def kill(self) -> None:
        for proc, _, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def __enter__(self) -> "Agents":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()  # only those a failed test left running


def truth(results: list[dict]) -> dict:
    """The agents' merged ground truth."""
    stats = [r["stats"] for r in results]
    return {
        "success": sum(r["executions"]["success"] for r in results),
        "failure": sum(r["executions"]["failure"] for r in results),
        "spans": sum(r["spans"] for r in results),
        "lost": sum(s["spans_dropped"] + s["spans_export_failed"] for s in stats),
        "exported": sum(s["spans_exported"] for s in stats),
        "slowest_ms": max(r["slowest_execution_ms"] for r in results),
    }


def unaffected(results: list[dict]) -> dict:
    """The merged ground truth, once checked that telemetry cost the agents nothing: every call
    returned within CALL_BOUND_MS and every span is accounted for on the agent's side."""
    t = truth(results)
    assert t["slowest_ms"] < CALL_BOUND_MS, t
    for r in results:
        s = r["stats"]
        assert s["spans_exported"] + s["spans_dropped"] + s["spans_export_failed"] == r["spans"], r
        assert s["internal_errors"] == 0, s
    return t


@contextmanager
def restored(*procs: ManagedProcess) -> Iterator[None]:
    """At the end of the block, starts again (in this order) whichever of `procs` it left
    stopped, so that the next test finds the whole pipeline up."""
    try:
        yield
    finally:
        for proc in procs:
            if not proc.running():
                proc.start(timeout=60)


def expect_totals(pipeline: Pipeline, service: str, t: dict) -> None:
    """Prometheus' counts of `service` equal the ground truth exactly (and settle there).
    Prints the ground truth as one JSON line (`pytest -s` shows the measured numbers)."""
    print(json.dumps({"service": service, **t}))
    sel = f'{{job="{service}"}}'
    queries = {
        f'sum(cugar_executions_total{{job="{service}", outcome="success"}})': t["success"],
        f'sum(cugar_executions_total{{job="{service}", outcome="failure"}})': t["failure"],
        f"sum(cugar_tool_calls_total{sel})": t["success"] + t["failure"],
        f"sum(cugar_execution_duration_seconds_count{sel})": t["success"] + t["failure"],
        f"sum(cugar_telemetry_dropped_total{sel})": t["lost"],
    }
    for promql, expected in queries.items():
        try:
            pipeline.wait_for(promql, lambda r, e=expected: bool(r) and float(r[0]["value"][1]) == e,
                              timeout=SETTLE_S)
        except TimeoutError:
            got = pipeline.query(promql)
            pytest.fail(f"{promql}: expected {expected}, Prometheus has {got}", pytrace=False)


def jaeger_span_ids(pipeline: Pipeline, service: str) -> list[str]:
    return [s["spanId"] for s in pipeline.spans(service)]


def expect_spans(pipeline: Pipeline, service: str, t: dict, exact: bool = True) -> None:
    """Every span the agents did not count as lost is in Jaeger. `exact`: and no other, once
    each. Otherwise (a collector killed with a batch in flight sends it again; an export that
    missed its deadline may still have arrived) at most every span produced, each at least
    once: a counted loss can over-state, never hide one."""
    ids = wait_spans(pipeline, service, t["spans"] - t["lost"])
    if exact:
        assert len(ids) == len(set(ids)) == t["spans"] - t["lost"], (len(ids), t)
    else:
        assert len(set(ids)) <= t["spans"], (len(set(ids)), t)


def wait_spans(pipeline: Pipeline, service: str, expected: int) -> list[str]:
    """Span ids of `service` in Jaeger once `expected` distinct ones are there."""
    ids: list[str] = []

    def enough() -> bool:
        nonlocal ids
        ids = jaeger_span_ids(pipeline, service)
        return len(set(ids)) >= expected

    try:
        wait_until(enough, SETTLE_S, interval=0.5, what=f"{expected} spans of {service}")
    except TimeoutError:
        pytest.fail(f"Jaeger has {len(set(ids))} distinct spans of {service}, expected "
                    f"{expected}", pytrace=False)
    return ids


def queue_sizes(pipeline: Pipeline) -> dict[str, float]:
    return {s.labels.get("exporter", "?"): s.value for s in scrape(pipeline.collector_telemetry_url)
            if s.name == "otelcol_exporter_queue_size"}
