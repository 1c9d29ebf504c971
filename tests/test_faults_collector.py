"""The collector fails; the agents never notice, and nothing is lost or counted twice.

Real processes throughout: our collector build, Prometheus and Jaeger (services/stack/pipeline.py)
and agent processes using our `otel` library (tests/support/fault_agent.py, which knows its own
ground truth: executions by outcome, spans produced, `tel.stats()`). Each test sends under its
own service name, so the tests share one pipeline; a test that stops a component starts it
again before it ends.

- SIGKILL of the collector mid-load (3 agents): Prometheus' totals equal the agents' counts.
- What the collector had accepted (spans and metric points) survives a SIGKILL in its
  persistent queue (file_storage) and reaches Jaeger and Prometheus after the restart;
  replayed cumulative points do not count twice.
- Agents started before the collector, with a small span queue: the spans they could not keep
  are counted in tel.stats() and in Prometheus (cugar_telemetry_dropped_total), and spans
  produced = spans in Jaeger + spans counted as dropped.
- In every case the agents raise nothing and an execution call returns within
  CALL_BOUND_MS, even while an export hangs for seconds.

Slow, blackholed and throttling (429/503 + Retry-After) collectors: tests/test_faults_network.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from services.stack.pipeline import Pipeline
from services.stack.probe import scrape
from services.stack.process import ManagedProcess, wait_until
from tests.conftest import REPO_ROOT, require_pipeline_components
from tests.support import require
from services.stack import components

pytestmark = pytest.mark.integration

# An execution call (with its tool call) never waits for the network: the agent's own work is
# empty, so this bounds what telemetry adds, with room for a loaded 2-core machine. An export
# that hangs takes seconds (OTEL_EXPORTER_OTLP_TIMEOUT), far above it.
CALL_BOUND_MS = 250
SETTLE_S = 45
AGENT_EXIT_S = 60


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    require_pipeline_components()
    require(components.JAEGER)
    with Pipeline(tmp_path_factory.mktemp("faults"), alertmanager=False) as p:
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


def check_agents_unaffected(t: dict, results: list[dict]) -> None:
    assert t["slowest_ms"] < CALL_BOUND_MS, t
    for r in results:  # every span is accounted for on the agent's side
        s = r["stats"]
        assert s["spans_exported"] + s["spans_dropped"] + s["spans_export_failed"] == r["spans"], r
        assert s["internal_errors"] == 0, s


def sigkill(proc: ManagedProcess) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    wait_until(lambda: not proc.running(), 10, what=f"{proc.name} to die")


def expect_totals(pipeline: Pipeline, service: str, t: dict) -> None:
    """Prometheus' counts of `service` equal the ground truth exactly (and settle there)."""
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


def test_collector_sigkilled_mid_load_totals_stay_exact(pipeline: Pipeline,
                                                        tmp_path: Path) -> None:
    service = "faults-sigkill"
    collector = pipeline.process("collector")
    # A 2 s export deadline: an export the outage breaks is given up on (and counted) quickly.
    env = {**pipeline.agent_env(), "OTEL_EXPORTER_OTLP_TIMEOUT": "2000"}
    agents = Agents(tmp_path, service, env, count=3, pace_ms=5)
    try:
        agents.wait_stats("metrics delivered", lambda s: s.get("metric_exports", 0) >= 1)
        sigkill(collector)
        # The agents keep working while it is down, until each has seen its exports fail.
        agents.wait_stats("exports failing", lambda s: s.get("metric_exports_failed", 0) >= 1
                          and s.get("span_exports_failed", 0) >= 1)
        collector.start(timeout=60)
        failed = [p["stats"]["metric_exports_failed"] for p in agents.progress()]
        before = [p["stats"]["metric_exports"] for p in agents.progress()]
        wait_until(lambda: all(p["stats"]["metric_exports"] >= b + 2
                               for p, b in zip(agents.progress(), before)), 60,
                   what="every agent to deliver metrics again")
        results = agents.finish()
    finally:
        agents.kill()
        if not collector.running():
            collector.start(timeout=60)
    t = truth(results)
    check_agents_unaffected(t, results)
    assert t["lost"] > 0 and all(f >= 1 for f in failed), t  # the outage did cost something
    expect_totals(pipeline, service, t)
    # Spans: each one is in Jaeger or counted as lost (a batch the collector had taken when it
    # was killed may be sent twice: at least once, never silently missing).
    ids = wait_spans(pipeline, service, t["spans"] - t["lost"])
    assert len(set(ids)) <= t["spans"]


def test_accepted_spans_and_points_survive_a_sigkill_in_the_persistent_queue(
        pipeline: Pipeline, tmp_path: Path) -> None:
    """Jaeger and Prometheus down: the collector accepts and holds everything the agent sends
    (the agent has finished and exited: it cannot resend). SIGKILL, backends back, restart:
    every span arrives in Jaeger and the counts in Prometheus are exact (cumulative points are
    replayed idempotently: several queued exports of the same series do not add up)."""
    service = "faults-persistent"
    collector, jaeger, prometheus = (pipeline.process(n) for n in
                                     ("collector", "jaeger", "prometheus"))
    jaeger.stop()
    prometheus.stop()
    try:
        agents = Agents(tmp_path, service, pipeline.agent_env(), count=1, executions=200,
                        pace_ms=2)
        agents.wait_played(200)
        results = agents.finish()
        t = truth(results)
        assert t["exported"] == t["spans"] and t["lost"] == 0, t  # the collector took them all
        # Two accepted exports of the same cumulative series wait in the queue together.
        assert results[0]["stats"]["metric_exports"] >= 2, results[0]["stats"]
        assert results[0]["stats"]["metric_exports_failed"] == 0, results[0]["stats"]
        wait_until(lambda: all(queue_sizes(pipeline).get(e, 0) > 0 for e in
                               ("otlp_grpc/traces", "otlp_http/prometheus")), 30,
                   what="the collector to hold spans and points in its sending queues")
        sigkill(collector)
    finally:
        for proc in (jaeger, prometheus):
            if not proc.running():
                proc.start(timeout=60)
        if not collector.running():
            collector.start(timeout=60)
    check_agents_unaffected(t, results)
    ids = wait_spans(pipeline, service, t["spans"])
    assert len(set(ids)) == t["spans"]
    expect_totals(pipeline, service, t)
    wait_until(lambda: not any(queue_sizes(pipeline).values()), SETTLE_S,
               what="the sending queues to drain")
    expect_totals(pipeline, service, t)  # nothing replayed later adds to them


def test_agents_started_before_the_collector_count_what_their_queue_dropped(
        pipeline: Pipeline, tmp_path: Path) -> None:
    """The collector is not there when the agents start. Their span queues (100 spans) fill;
    every span that does not fit, or whose export gave up, is counted in tel.stats() and, once
    the collector is up, in Prometheus; spans produced = spans in Jaeger + spans counted."""
    service = "faults-late-collector"
    collector = pipeline.process("collector")
    collector.stop()
    env = {**pipeline.agent_env(), "OTEL_BSP_MAX_QUEUE_SIZE": "100",
           "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "50", "OTEL_EXPORTER_OTLP_TIMEOUT": "2000"}
    agents = Agents(tmp_path, service, env, count=2, pace_ms=2)
    try:
        agents.wait_played(400)  # 800 spans: far more than the queues hold
        collector.start(timeout=60)
        agents.wait_played(agents.played() + 100)
        results = agents.finish()
    finally:
        agents.kill()
        if not collector.running():
            collector.start(timeout=60)
    t = truth(results)
    check_agents_unaffected(t, results)
    dropped = sum(r["stats"]["spans_dropped"] for r in results)
    assert dropped > 0, t  # the queues did overflow, or this proves nothing
    expect_totals(pipeline, service, t)  # includes cugar_telemetry_dropped_total == t["lost"]
    ids = wait_spans(pipeline, service, t["spans"] - t["lost"])
    assert len(ids) == len(set(ids)) == t["spans"] - t["lost"], (len(ids), t)
