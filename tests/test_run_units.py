"""Unit tests of `make run`'s parts: the supervisor (a fake process that dies, bounded backoff,
giving up), the standard-port choice, golden signals from the agents' own /metrics, and the
agent's start/end gates."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from otel.catalogue import LATENCY_PERCENTILES
from services.stack import agent_metrics, ports
from services.stack.agent_metrics import (EXECUTION_DURATION, EXECUTIONS, AgentMetrics,
                                          format_totals, quantile)
from services.stack.probe import parse_exposition, scrape
from services.stack.process import ManagedProcess, ProcessFailed, free_port, wait_until
from services.stack.supervisor import GaveUp, Supervisor, exit_status

REPO = Path(__file__).resolve().parents[1]


# --- supervisor ----------------------------------------------------------------------------
class FakeProcess:
    """Stands in for a ManagedProcess: dies when told, starts (or fails to) when asked."""

    def __init__(self, tmp: Path, name: str = "collector") -> None:
        self.name = name
        self.log_path = tmp / f"{name}.log"
        self.log_path.write_text("line 1\nlast words of the child\n")
        self.pid: int | None = 1000
        self.returncode: int | None = None
        self.starts = 0
        self.fail_next_start = False

    def running(self) -> bool:
        return self.returncode is None

    def die(self, code: int) -> None:
        self.returncode = code

    def start(self, timeout: float = 60.0) -> "FakeProcess":
        self.starts += 1
        if self.fail_next_start:
            self.fail_next_start = False
            raise ProcessFailed(f"{self.name} exited with code 1 during start-up\n--- log ---")
        self.pid = 1000 + self.starts
        self.returncode = None
        return self

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def supervisor(said: list[str], clock: Clock, **kwargs) -> Supervisor:
    return Supervisor(said.append, clock=clock, wall_clock=lambda: 1_700_000_000.0 + clock.now,
                      **kwargs)


def test_a_child_that_dies_is_reported_degraded_then_restarted_after_the_backoff(
        tmp_path: Path) -> None:
    said: list[str] = []
    clock = Clock()
    sup = supervisor(said, clock)
    proc = FakeProcess(tmp_path)
    sup.watch(proc)  # type: ignore[arg-type]
    sup.check()
    assert not said and sup.status() == ""

    proc.die(-signal.SIGKILL)
    sup.check()
    report = "\n".join(said)
    assert "collector (pid 1000) exited: killed by SIGKILL (exit status -9)" in report
    assert "restarting it in 1s" in report and "last words of the child" in report
    assert sup.status().startswith("DEGRADED: collector down since ")
    assert "killed by SIGKILL" in sup.status()

    clock.now += 0.9
    sup.check()
    assert proc.starts == 0  # the backoff has not passed
    clock.now += 0.1
    sup.check()
    assert proc.starts == 1 and proc.running()
    assert sup.status() == "" and said[-1].startswith("collector restarted (pid 1001) after 1.0s")


def test_backoff_doubles_per_recent_restart_and_is_capped() -> None:
    sup = Supervisor(lambda _line: None, initial_backoff_s=1, max_backoff_s=30)
    assert [sup.backoff(n) for n in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_restart_delays_grow_then_it_gives_up_after_the_cap_within_the_window(
        tmp_path: Path) -> None:
    said: list[str] = []
    clock = Clock()
    sup = supervisor(said, clock, max_restarts=3, window_s=600)
    proc = FakeProcess(tmp_path, "prometheus")
    sup.watch(proc)  # type: ignore[arg-type]
    delays = []
    for _ in range(3):
        proc.die(1)
        sup.check()
        delays.append(sup.outages()[0].restart_at - clock.now)
        clock.now += delays[-1]
        sup.check()
        assert proc.running()
    assert delays == [1, 2, 4]
    proc.die(2)
    with pytest.raises(GaveUp, match=r"prometheus exited \(exit status 2\) after 3 restarts "
                                     r"within 600s; giving up"):
        sup.check()
    assert proc.starts == 3
    assert "DEGRADED: prometheus down since" in sup.status()


def test_restarts_older_than_the_window_no_longer_count(tmp_path: Path) -> None:
    said: list[str] = []
    clock = Clock()
    sup = supervisor(said, clock, max_restarts=2, window_s=60)
    proc = FakeProcess(tmp_path)
    sup.watch(proc)  # type: ignore[arg-type]
    for _ in range(6):  # a death every 2 minutes: never more than one restart in the window
        proc.die(1)
        sup.check()
        assert sup.outages()[0].restart_at - clock.now == 1
        clock.now += 1
        sup.check()
        clock.now += 120
    assert proc.starts == 6


def test_a_restart_that_fails_counts_as_a_death_and_keeps_the_outage(tmp_path: Path) -> None:
    said: list[str] = []
    clock = Clock()
    sup = supervisor(said, clock)
    proc = FakeProcess(tmp_path)
    sup.watch(proc)  # type: ignore[arg-type]
    proc.die(1)
    sup.check()
    since = sup.outages()[0].since
    proc.fail_next_start = True
    clock.now += 1
    sup.check()
    assert "collector (pid 1000) failed to restart: collector exited with code 1 during " \
           "start-up; restarting it in 2s" in said[-1]
    assert sup.outages()[0].since == since  # still down since the first death
    clock.now += 2
    sup.check()
    assert proc.running() and sup.status() == ""


def test_a_bounded_workload_that_finishes_is_not_a_death(tmp_path: Path) -> None:
    said: list[str] = []
    sup = supervisor(said, Clock())
    agent, failed_agent = FakeProcess(tmp_path, "agent-0"), FakeProcess(tmp_path, "agent-1")
    sup.watch(agent, finished_ok=True)  # type: ignore[arg-type]
    sup.watch(failed_agent, finished_ok=True)  # type: ignore[arg-type]
    agent.die(0)
    failed_agent.die(1)
    sup.check()
    assert [o.name for o in sup.outages()] == ["agent-1"]


def test_exit_status_wording() -> None:
    assert exit_status(-9) == "killed by SIGKILL (exit status -9)"
    assert exit_status(3) == "exit status 3"
    assert exit_status(None) == "still running"


def test_a_real_process_killed_with_sigkill_is_restarted_with_the_same_argv(
        tmp_path: Path) -> None:
    said: list[str] = []
    sup = Supervisor(said.append, initial_backoff_s=0.1)
    proc = ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
                          tmp_path / "sleeper.log")
    proc.start()
    sup.watch(proc)
    try:
        first = proc.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: sup.check() or (proc.running() and proc.pid != first), 10,
                   what="the restart")
        assert "sleeper (pid %d) exited: killed by SIGKILL" % first in said[0]
        assert said[-1].startswith(f"sleeper restarted (pid {proc.pid})")
    finally:
        proc.stop()


# --- ports ---------------------------------------------------------------------------------
def unused_port() -> int:
    """A port nothing listens on that free_port has not handed out (a test's 'standard' port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_standard_ports_are_kept_and_only_a_busy_one_is_moved(monkeypatch) -> None:
    free, busy = unused_port(), unused_port()
    monkeypatch.setitem(ports.STANDARD_PORTS, "prometheus", (free, "Prometheus"))
    monkeypatch.setitem(ports.STANDARD_PORTS, "api", (busy, "API"))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", busy))
        listener.listen()
        chosen, moved = ports.choose_ports(["prometheus", "api"])
    assert chosen["prometheus"] == free
    assert chosen["api"] != busy
    assert moved == [f"port {busy} (API) is busy; using {chosen['api']}"]
    assert free_port() not in (free, chosen["api"])  # claimed ports are never handed out again


def test_any_ports_and_port_zero_use_free_ports(monkeypatch) -> None:
    standard = unused_port()
    monkeypatch.setitem(ports.STANDARD_PORTS, "prometheus", (standard, "Prometheus"))
    chosen, moved = ports.choose_ports(["prometheus"], any_ports=True)
    assert chosen["prometheus"] != standard and not moved
    chosen, moved = ports.choose_ports(["api"], fixed={"api": 0})
    assert chosen["api"] != 8000 and not moved


# --- golden signals from the agents' /metrics --------------------------------------------
def exposition(instance: str, ok: int, failed: int, buckets: dict[str, int]) -> str:
    counter, bucket = EXECUTIONS.series(), EXECUTION_DURATION.series("_bucket")
    lines = [f'{counter}{{instance="{instance}",outcome="success",profile="smb"}} {ok}',
             f'{counter}{{instance="{instance}",outcome="failure",profile="smb"}} {failed}']
    lines += [f'{bucket}{{instance="{instance}",outcome="success",profile="smb",le="{le}"}} {n}'
              for le, n in buckets.items()]
    return "\n".join(lines) + "\n"


def test_quantile_interpolates_inside_the_bucket_as_histogram_quantile() -> None:
    buckets = [(100.0, 50.0), (200.0, 90.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(100.0)
    assert quantile(0.7, buckets) == pytest.approx(150.0)
    assert quantile(0.95, buckets) == pytest.approx(200.0)  # +Inf bucket: highest finite bound
    assert quantile(0.25, buckets) == pytest.approx(50.0)
    assert quantile(0.5, [(100.0, 0.0), (float("inf"), 0.0)]) is None


def test_lifetime_totals_keep_an_exited_agent_and_format_the_line(monkeypatch) -> None:
    scale = 1.0 if EXECUTION_DURATION.unit == "ms" else 0.001
    le = {f"{100 * scale:g}": 5, f"{1000 * scale:g}": 9, "+Inf": 10}
    served = {"a": exposition("w-a", 8, 2, le), "b": exposition("w-b", 10, 0, le)}
    monkeypatch.setattr(agent_metrics, "scrape", lambda url: parse_exposition(served[url]))
    metrics = AgentMetrics(["a", "b"])
    assert metrics.poll() == []
    t = metrics.totals()
    assert (t.executions, t.successful, t.failed) == (20, 18, 2)
    assert t.latency_ms["p50"] == pytest.approx(100.0)
    assert t.latency_ms["p95"] == pytest.approx(1000.0)  # in the +Inf bucket
    assert set(t.latency_ms) == set(LATENCY_PERCENTILES)

    def gone(url: str) -> list:
        if url == "a":
            raise ConnectionRefusedError("agent a exited")
        return parse_exposition(served[url])

    monkeypatch.setattr(agent_metrics, "scrape", gone)
    served["b"] = exposition("w-b", 15, 1, le)
    assert len(metrics.poll()) == 1
    assert metrics.totals().executions == 26  # a's last scrape still counts
    line = format_totals(metrics.totals())
    assert line.startswith("since start: executions=26 (ok 23 / failed 3) success=88.5% "
                           "error=11.5% p50=")


# --- the agent's gates ---------------------------------------------------------------------
def test_agent_gates_hold_it_before_the_first_and_after_the_last_execution(
        tmp_path: Path) -> None:
    port = free_port()
    start, end = tmp_path / "start", tmp_path / "end"
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
           "CUGAR_EMBEDDED_PROMETHEUS_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "services.agent", "run", "--executions", "5",
                             "--time-scale", "0", "--seed", "1", "--start-gate", str(start),
                             "--end-gate", str(end)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = f"http://127.0.0.1:{port}/metrics"

    def executions() -> float | None:
        try:
            return sum(s.value for s in scrape(url) if s.name == EXECUTIONS.series())
        except OSError:
            return None

    try:
        wait_until(lambda: executions() is not None, 30, what="the agent's /metrics")
        # Not a synchronisation: a held gate is an absence of progress, shown by giving the
        # agent time it would otherwise use (several of its gate polls).
        time.sleep(0.5)
        assert executions() == 0 and proc.poll() is None  # held at the start gate
        start.touch()
        wait_until(lambda: executions() == 5, 30, what="5 executions on /metrics")
        time.sleep(0.5)
        assert proc.poll() is None and executions() == 5  # held at the end gate, counts served
        end.touch()
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert json.loads(out.strip().splitlines()[-1])["executions"] == 5


# --- the golden-signals line from /dashboard -------------------------------------------------
def _body(status: str = "ok", partial: bool = False) -> dict:
    rate = None if partial else 0.9
    return {"status": status, "time_range": {"window": "5m"},
            "degraded": [] if status == "ok" else [
                {"component": "collector", "reason": "scrape target down",
                 "since": "2026-01-05T12:00:01Z", "affects": ["metrics", "traces"]}],
            "executions": {"total": 10, "successful": 9, "failed": 1, "partial": partial},
            "golden_signals": {"success_rate": rate, "error_rate": rate, "tool_error_rate": rate,
                               "budget_utilization": rate, "approval_wait_time_ms": rate,
                               "steps_per_execution": rate, "partial": partial,
                               "latency_ms": {"p50": rate, "p95": rate, "p99": rate}}}


def test_the_line_leads_with_the_pipelines_status_and_marks_a_partial_window() -> None:
    from services.stack.run import format_summary

    ok = format_summary(_body())
    assert ok.startswith("window 5m: executions=10 ") and "DEGRADED" not in ok
    degraded = format_summary(_body("degraded", partial=True))
    local = datetime.fromisoformat("2026-01-05T12:00:01+00:00").astimezone()
    assert degraded.startswith(f"pipeline DEGRADED: collector since {local:%H:%M:%S} | "
                               f"PARTIAL window 5m ")
    assert "executions>=10 " in degraded and "success=- " in degraded
    twice = _body("degraded", partial=True)
    twice["degraded"].append({**twice["degraded"][0], "since": "2026-01-05T11:59:00Z"})
    earlier = datetime.fromisoformat("2026-01-05T11:59:00+00:00").astimezone()
    assert format_summary(twice).startswith(f"pipeline DEGRADED: collector since "
                                            f"{earlier:%H:%M:%S} | ")
