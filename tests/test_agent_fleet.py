"""Several agent processes against a real collector: each worker is its own instance, flushes
before it exits (also when stopped by a signal), and the fleet's metrics equal the summary.

The collector here only writes what it receives to a file (OTLP JSON lines), so the test
reads exactly what the agent processes sent, with no Prometheus in between.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel import catalogue
from otel.testing import total
from services.stack.components import COLLECTOR
from services.stack.probe import attributes
from services.stack.process import ManagedProcess, free_port, wait_until
from services.stack.run import agent_argv
from tests.support import require
from tests.support.processes import alive, children

REPO = Path(__file__).resolve().parents[1]
INSTANCE = "service.instance.id"

COLLECTOR_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp}
exporters:
  file/metrics:
    path: {metrics}
    format: json
    flush_interval: 100ms
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [file/metrics]
"""


class Collector:
    def __init__(self, workdir: Path) -> None:
        self.otlp, health = free_port(), free_port()
        self.metrics_file = workdir / "metrics.jsonl"
        config = workdir / "collector.yaml"
        config.write_text(COLLECTOR_CONFIG.format(otlp=self.otlp, health=health,
                                                  metrics=self.metrics_file))
        self.process = ManagedProcess("collector", [require(COLLECTOR), "--config", config],
                                      workdir / "collector.log",
                                      ready_url=f"http://127.0.0.1:{health}/")

    def agent_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        return {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.otlp}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_EXPORTER": "none", **extra}

    def latest(self) -> dict[str, dict[frozenset, float]]:
        """{metric: {attributes and INSTANCE: last value}} of every counter and histogram count:
        the data is cumulative, so the last export holds each instance's totals."""
        values: dict[str, dict[frozenset, float]] = {}
        if not self.metrics_file.exists():
            return values
        # the collector may be mid-write: only complete lines count
        for line in self.metrics_file.read_text().split("\n")[:-1]:
            for rm in json.loads(line).get("resourceMetrics", []):
                instance = attributes(rm["resource"].get("attributes", []))[INSTANCE]
                for sm in rm.get("scopeMetrics", []):
                    for metric in sm.get("metrics", []):
                        data = metric.get("sum") or metric.get("histogram") or {}
                        for point in data.get("dataPoints", []):
                            attrs = {**attributes(point.get("attributes", [])), INSTANCE: instance}
                            value = point.get("asDouble", point.get("asInt", point.get("count")))
                            values.setdefault(metric["name"], {})[frozenset(attrs.items())] = (
                                float(value))
        return values

    def total(self, metric: str, **match: str) -> float:
        return total(self.latest().get(metric, {}), **match)

    def instances(self) -> set[str]:
        return {dict(key)[INSTANCE] for series in self.latest().values() for key in series}


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(tmp_path)
    with c.process:
        yield c


def start_agent(env: dict[str, str], argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def assert_fleet_equals(collector: Collector, summary: dict) -> None:
    latest = collector.latest()

    def c(metric: str, **match: str) -> float:
        return total(latest.get(metric, {}), **match)

    assert c(catalogue.EXECUTIONS.name) == summary["executions"]
    assert c(catalogue.EXECUTIONS.name, outcome="failure") == summary["failed"]
    assert c(catalogue.TOOL_CALLS.name) == summary["tool_calls"]
    assert c(catalogue.TOOL_ERRORS.name) == summary["tool_errors"]
    assert c(catalogue.BUDGET_USED.name) == summary["budget_used"]
    assert c(catalogue.BUDGET_EXCEEDED.name) == summary["budget_exceeded"]
    for domain, d in summary["by_domain"].items():
        assert c(catalogue.DOMAIN_USAGE.name, domain=domain) == d["calls"]
    for decision, n in summary["approvals"].items():
        assert c(catalogue.APPROVALS.name, decision=decision) == n


def test_each_worker_is_an_instance_and_the_fleet_sums_exactly(collector: Collector) -> None:
    # A long export interval: only the final flush at shutdown carries the data.
    env = collector.agent_env(OTEL_METRIC_EXPORT_INTERVAL="3600000")
    agent = start_agent(env, [sys.executable, "-m", "services.agent", "run", "--executions", "600",
                              "--processes", "3", "--time-scale", "0", "--seed", "17",
                              "--run-id", "fleet"])
    out, err = agent.communicate(timeout=120)
    assert agent.returncode == 0, err
    summary = json.loads(out)
    wait_until(lambda: collector.total(catalogue.EXECUTIONS.name) >= summary["executions"],
               timeout=20, what="the fleet's final flush in the collector")
    host = os.uname().nodename
    assert collector.instances() == {f"{host}-fleet-w{i}" for i in range(3)}
    assert_fleet_equals(collector, summary)


@pytest.mark.parametrize("signum, whole_group, processes", [
    (signal.SIGTERM, False, 2),  # `docker stop` / `kill <pid>`: the parent tells its workers
    (signal.SIGINT, True, 2),  # Ctrl-C in a terminal: every process of the group gets it
    (signal.SIGTERM, False, 1),  # one process: the work runs in the parent itself
])
def test_a_signal_stops_the_run_cleanly_and_loses_nothing(
        collector: Collector, signum: int, whole_group: bool, processes: int) -> None:
    env = collector.agent_env(OTEL_METRIC_EXPORT_INTERVAL="300")
    agent = start_agent(env, agent_argv(40, 120, processes, 1, ["--seed", "5"]))
    try:
        wait_until(lambda: len(collector.instances()) == processes
                   and collector.total(catalogue.EXECUTIONS.name) >= 10,
                   timeout=60, what="every worker exporting executions")
        workers = children(agent.pid)
        assert len(workers) >= (processes if processes > 1 else 0)
        if whole_group:
            os.killpg(agent.pid, signum)
        else:
            agent.send_signal(signum)
        out, err = agent.communicate(timeout=60)
    finally:
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait()
    assert agent.returncode == 128 + signum, err
    summary = json.loads(out)
    assert summary["interrupted"] is True
    assert 10 <= summary["executions"] < 40 * 120
    # (the spawn context's resource tracker exits on its own once the parent has gone)
    wait_until(lambda: not [pid for pid in workers if alive(pid)], timeout=10,
               what="every child process of the agent to exit")
    wait_until(lambda: collector.total(catalogue.EXECUTIONS.name) >= summary["executions"],
               timeout=20, what="the workers' final flush")
    assert_fleet_equals(collector, summary)
