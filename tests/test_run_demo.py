"""The main job (`python -m services.stack.run`): comes up, shows golden signals, and a signal
stops every process it started (no orphans), in collector mode, in the embedded fallback and in
the agents-only mode of a machine without Prometheus; a killed child is reported, the line says
DEGRADED, and it is restarted."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from services.stack.components import COLLECTOR, PROMETHEUS
from services.stack.process import wait_until
from services.stack.run import agent_summary
from tests.support import require
from tests.support.processes import alive, descendants

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
GOLDEN_LINE = re.compile(r"executions=(\d+) .* success=(\d+\.\d)% error=(\d+\.\d)% p50=\d+ms "
                         r"p95=\d+ms")


class Demo:
    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        argv = [sys.executable, "-m", "services.stack.run", "--scrape-interval", "1s",
                "--rate", "6", "--time-scale", "0.1", "--any-ports", "--refresh", "1",
                "--export-interval-ms", "500", "--workdir", str(tmp / "run"), *args]
        self.proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **(env or {})},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                self.lines.put(line.rstrip("\n"))
        except (ValueError, OSError):  # the test closed the pipe on purpose
            pass

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.output.append(line)
            if match := pattern.search(line):
                return match
        self.stop_hard()
        pytest.fail(f"no line matching {pattern.pattern!r} within {timeout}s; output:\n"
                    + "\n".join(self.output))

    def finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return code

    def stop_hard(self) -> None:
        if self.proc.poll() is None:
            for pid in descendants(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait()


def run_until_golden_signals_then_signal(tmp: Path, signum: int, *args: str,
                                         env: dict[str, str] | None = None) -> tuple[Demo, dict]:
    demo = Demo(tmp, *args, env=env)
    try:
        match = demo.wait_for_line(GOLDEN_LINE, timeout=90)
        assert int(match.group(1)) > 0
        assert float(match.group(2)) + float(match.group(3)) == pytest.approx(100.0, abs=0.11)
        family = descendants(demo.proc.pid)
        demo.proc.send_signal(signum)
        assert demo.finish(timeout=60) == 0, "\n".join(demo.output)
    finally:
        demo.stop_hard()
    return demo, family


def bounded_run(tmp: Path, *args: str, timeout: float,
                env: dict[str, str] | None = None) -> tuple[Demo, str]:
    """A `--duration` run to its end; it must exit 0. The demo and its whole output."""
    demo = Demo(tmp, *args, env=env)
    try:
        code = demo.finish(timeout=timeout)
    finally:
        demo.stop_hard()
    text = "\n".join(demo.output)
    assert code == 0, text
    return demo, text


def test_collector_mode_shows_golden_signals_and_sigint_leaves_no_orphans(tmp_path: Path) -> None:
    require(COLLECTOR)
    require(PROMETHEUS)
    demo, family = run_until_golden_signals_then_signal(tmp_path, signal.SIGINT)
    text = "\n".join(demo.output)
    assert "collector mode" in text and "SIGINT received" in text and "stopped." in text
    commands = " ".join(family.values())
    for expected in ("cugar-otelcol", "prometheus", "alertmanager", "services.api",
                     "services.agent"):
        assert expected in commands, f"{expected} was not among the started processes"
    assert len(family) >= 7  # plus uvicorn and agent worker processes
    leftovers = {pid: cmd for pid, cmd in family.items() if alive(pid)}
    assert not leftovers, f"processes left running after SIGINT: {leftovers}"


def test_without_collector_binary_it_falls_back_to_embedded_mode_and_sigterm_stops_it(
        tmp_path: Path) -> None:
    require(PROMETHEUS)
    demo, family = run_until_golden_signals_then_signal(
        tmp_path, signal.SIGTERM, env={"CUGAR_COLLECTOR_BIN": str(tmp_path / "missing")})
    text = "\n".join(demo.output)
    assert "falling back to EMBEDDED mode" in text and "EMBEDDED mode)" in text
    assert "SIGTERM received" in text
    assert not any("cugar-otelcol" in cmd for cmd in family.values())
    leftovers = {pid: cmd for pid, cmd in family.items() if alive(pid)}
    assert not leftovers, f"processes left running after SIGTERM: {leftovers}"


def agents_truth(workdir: Path, agents: int) -> list[int]:
    """[executions, successful, failed] summed over the agents' own summaries."""
    parts = [agent_summary(workdir / f"agent-{i}.log") for i in range(agents)]
    assert all(p is not None for p in parts)
    return [sum(p[k] for p in parts) for k in ("executions", "successful", "failed")]


def test_bounded_embedded_run_ends_by_itself_reconciled(tmp_path: Path) -> None:
    """The agents are held until Prometheus has scraped them before their first execution and
    after their last, so Prometheus counts every execution of the run."""
    require(PROMETHEUS)
    _, text = bounded_run(tmp_path, "--embedded", "--duration", "6", timeout=120)
    assert "stopped." in text
    match = re.search(r"reconciled: Prometheus counts (\d+) executions \((\d+) ok / (\d+) failed\)",
                      text)
    assert match, text
    assert [int(g) for g in match.groups()] == agents_truth(tmp_path / "run", 2)
    assert agents_truth(tmp_path / "run", 2)[0] == 36  # 6/s for 6 s: every execution played


def test_bounded_collector_run_ends_reconciled_with_the_agents_own_count(tmp_path: Path) -> None:
    require(COLLECTOR)
    require(PROMETHEUS)
    _, text = bounded_run(tmp_path, "--duration", "6", timeout=150)
    truth = agent_summary(tmp_path / "run" / "agent.log")
    assert truth is not None and truth["executions"] > 0, text
    match = re.search(r"reconciled: Prometheus counts (\d+) executions \((\d+) ok / (\d+) failed\)",
                      text)
    assert match, text
    assert [int(g) for g in match.groups()] == [
        truth["executions"], truth["successful"], truth["failed"]]
    whole_run = re.search(r"whole run: window \d+m: executions=(\d+)", text)
    assert whole_run and int(whole_run.group(1)) == truth["executions"], text


@pytest.mark.parametrize("args, message", [
    (["--rate", "0"], "--rate and --refresh must be > 0"),
    (["--duration", "-1"], "--duration must be > 0"),
    (["--scrape-interval", "fast"], "--scrape-interval: expected a duration"),
])
def test_bad_options_are_refused(args: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "services.stack.run", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr


def test_a_closed_output_pipe_does_not_skip_the_teardown(tmp_path: Path) -> None:
    """`make run | head` closes stdout early; stopping must still stop every process."""
    require(PROMETHEUS)
    demo = Demo(tmp_path, "--embedded")
    try:
        wait_until(lambda: any("services.agent" in cmd for cmd in descendants(demo.proc.pid).values()),
                   60, what="the demo's agent process")
        family = descendants(demo.proc.pid)
        assert demo.proc.stdout is not None
        demo.proc.stdout.close()
        demo.proc.send_signal(signal.SIGTERM)
        demo.proc.wait(timeout=60)
    finally:
        demo.stop_hard()
    leftovers = {pid: cmd for pid, cmd in family.items() if alive(pid)}
    assert not leftovers, f"processes left running: {leftovers}"


def test_a_killed_collector_is_reported_degraded_and_restarted(tmp_path: Path) -> None:
    require(COLLECTOR)
    require(PROMETHEUS)
    demo = Demo(tmp_path)
    try:
        demo.wait_for_line(GOLDEN_LINE, timeout=90)
        pids = json.loads((tmp_path / "run" / "pids.json").read_text())
        assert set(pids) >= {"collector", "prometheus", "alertmanager", "jaeger", "api", "agent"}
        os.kill(pids["collector"], signal.SIGKILL)
        demo.wait_for_line(re.compile(rf"^collector \(pid {pids['collector']}\) exited: killed by "
                                      r"SIGKILL \(exit status -9\); restarting it in 1s"), 30)
        restarted = demo.wait_for_line(re.compile(r"^collector restarted \(pid (\d+)\)"), 60)
        text = "\n".join(demo.output)
        assert re.search(r"DEGRADED: collector down since \d\d:\d\d:\d\d .*\| ", text), text
        new_pid = int(restarted.group(1))
        assert new_pid != pids["collector"] and alive(new_pid)
        assert json.loads((tmp_path / "run" / "pids.json").read_text())["collector"] == new_pid
        line = demo.wait_for_line(GOLDEN_LINE, timeout=30)
        assert "DEGRADED" not in line.string
        demo.proc.send_signal(signal.SIGINT)
        assert demo.finish(timeout=60) == 0, "\n".join(demo.output)
    finally:
        demo.stop_hard()


AGENTS_ONLY_LINE = re.compile(r"since start: executions=(\d+) .* success=(\d+\.\d)% "
                              r"error=(\d+\.\d)% p50=\d+ms p95=\d+ms .*no Prometheus, alerting "
                              r"or traces in this mode: install Go, then `make deps`")


def test_without_prometheus_it_runs_the_agents_alone_and_says_so(tmp_path: Path) -> None:
    """A machine without Go has no builds at all: the run says what it runs and what it does
    not, and the line's lifetime counts (from the agents' own /metrics) rise."""
    missing = str(tmp_path / "missing")
    env = {var: missing for var in ("CUGAR_COLLECTOR_BIN", "CUGAR_PROMETHEUS_BIN",
                                    "CUGAR_ALERTMANAGER_BIN", "CUGAR_JAEGER_BIN")}
    demo, text = bounded_run(tmp_path, "--duration", "6", env=env, timeout=90)
    assert "AGENTS-ONLY mode" in text and "no Prometheus build was found" in text
    assert "the simulated agents, each serving its metrics at an in-process /metrics, and the " \
           "API's /health" in text
    assert "install Go, then run `make deps`" in text
    counts = [int(m.group(1)) for line in demo.output if (m := AGENTS_ONLY_LINE.search(line))]
    assert len(counts) >= 3 and counts == sorted(counts) and counts[-1] > counts[0] > 0, text
    lines = [line for line in demo.output if "since start:" in line]
    assert all("no Prometheus, alerting or traces in this mode" in line for line in lines), text
    truth = agents_truth(tmp_path / "run", 2)
    assert (f"reconciled: the agents' /metrics count {truth[0]} executions ({truth[1]} ok / "
            f"{truth[2]} failed)") in text
