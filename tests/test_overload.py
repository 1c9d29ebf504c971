"""Overload: 10x the nominal rate from several processes against a collector with a small
memory limit. Memory stays bounded on both sides, refusals are counted, CollectorRefusingData
fires, and the agents raise nothing and count what they lost.

The load: four agent processes (our library, OTLP/HTTP) together at 10x `make run`'s default
execution rate, plus two raw OTLP/gRPC senders (tests/support/otlp_raw.py) each streaming
2 MiB trace requests from four threads as fast as the collector answers, which is what takes
the heap past the limit (at 10x nominal alone, about 120 spans/s, the collector's heap stays
under 20 MiB). The two protocols keep the agents' share apart in the collector's own counts
(`transport="http"`).

Mutation check (docs/pipeline.md#limits-and-bad-input): without the limits
(CUGAR_COLLECTOR_MEMORY_LIMIT_MIB=100000, no GOMEMLIMIT) the same load takes the collector's
peak RSS past the bound and nothing is refused.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from services.stack import components
from services.stack.collector import MEMORY_LIMIT_VAR, go_memory_limit
from services.stack.pipeline import Pipeline
from services.stack.probe import scrape
from services.stack.process import wait_until
from services.stack.run import parse_args as run_defaults
from tests.support import require
from tests.support.promql import alert_expr

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]

NOMINAL = run_defaults([])  # what `make run` plays by default
OVERLOAD_RATE = 10 * NOMINAL.rate
AGENTS = 4
LOAD_S = 15.0
BLASTERS, BLASTER_THREADS, BLAST_SPANS, BLAST_ATTRIBUTE_BYTES = 2, 4, 500, 4096

LIMIT_MIB, SPIKE_MIB = 32, 16
# The memory_limiter bounds the heap at limit_mib (plus what arrives within one check
# interval: spike_limit_mib); on top of it come the requests being decoded before the limiter
# sees them (at most one per sending thread, ~2 MiB on the wire each here, held twice while it
# is decoded: its bytes and its pdata) and the idle process (binary, Go runtime), measured
# before the load. Measured: peak 77-126 MiB with the limits (bound ~136), 151-185 MiB
# without them (CUGAR_COLLECTOR_MEMORY_LIMIT_MIB=100000, so no effective GOMEMLIMIT either).
IN_FLIGHT_MIB = BLASTERS * BLASTER_THREADS * 2 * 2


def collector_rss_bound_mib(idle_rss_mib: float) -> float:
    return idle_rss_mib + LIMIT_MIB + SPIKE_MIB + IN_FLIGHT_MIB


# An agent process is about 40 MiB; its span queue is bounded (OTEL_BSP_MAX_QUEUE_SIZE, here
# small so that a refusing collector fills it) and its metrics are a fixed set of
# pre-aggregated series, so overload must not grow it.
AGENT_QUEUE = 256
AGENT_RSS_BOUND_MIB = 80
# Each export gives up after 2 s of retrying (OTEL_EXPORTER_OTLP_TIMEOUT): losses then come
# from refused exports, counted as spans_export_failed, and from the full queue meanwhile.
AGENT_EXPORT_TIMEOUT_MS = 2000

COLLECTOR_ENV = {MEMORY_LIMIT_VAR: str(LIMIT_MIB), "CUGAR_COLLECTOR_MEMORY_SPIKE_MIB": str(SPIKE_MIB)}


def status_kib(pid: int, field: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else None


class PeakRss:
    """The highest VmHWM seen for each pid, sampled until stopped (a process's own VmHWM is
    gone once it exits)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak_kib = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.2)

    def sample(self) -> None:
        for name, pid in self.pids.items():
            hwm = status_kib(pid, "VmHWM")
            if hwm is not None:
                self.peak_kib[name] = max(self.peak_kib[name], hwm)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(5)
        return {name: kib / 1024 for name, kib in self.peak_kib.items()}


def agent_stats(stderr: str) -> dict:
    """The `telemetry {...}` (tel.stats()) of an agent CLI's final log line."""
    found = re.findall(r"; telemetry (\{.*\})$", stderr, re.M)
    assert found, f"no telemetry stats in the agent's log:\n{stderr[-2000:]}"
    return ast.literal_eval(found[-1])


def test_compose_sets_gomemlimit_to_80_percent_of_the_memory_limit() -> None:
    env = yaml.safe_load((ROOT / "docker-compose.yml").read_text())[
        "services"]["otel-collector"]["environment"]
    assert env["GOMEMLIMIT"] == go_memory_limit({MEMORY_LIMIT_VAR: env[MEMORY_LIMIT_VAR]})
    assert go_memory_limit({MEMORY_LIMIT_VAR: "48"}) == "38MiB"
    assert go_memory_limit({MEMORY_LIMIT_VAR: "48", "GOMEMLIMIT": "1GiB"}) == "1GiB"


@pytest.fixture(scope="module")
def overloaded(tmp_path_factory: pytest.TempPathFactory):
    for component in (components.COLLECTOR, components.PROMETHEUS, components.JAEGER):
        require(component)
    workdir = tmp_path_factory.mktemp("overload")
    mp = pytest.MonkeyPatch()
    # Jaeger keeps every trace it is sent: bound it (the raw senders' spans are 1 trace each).
    mp.setenv("CUGAR_JAEGER_MAX_TRACES", "2000")
    try:
        with Pipeline(workdir, alertmanager=False, collector_env=COLLECTOR_ENV,
                      rule_for_override={"CollectorRefusingData": "0s"}) as p:
            yield p, run_load(p, workdir)
    finally:
        mp.undo()


def run_load(p: Pipeline, workdir: Path) -> dict:
    agent_env = {**os.environ, **p.agent_env(protocol="http/protobuf"),
                 "OTEL_SERVICE_NAME": "overload-agent",
                 "OTEL_BSP_MAX_QUEUE_SIZE": str(AGENT_QUEUE),
                 "OTEL_EXPORTER_OTLP_TIMEOUT": str(AGENT_EXPORT_TIMEOUT_MS)}
    agents = [subprocess.Popen(
        [sys.executable, "-m", "services.agent", "run", "--rate", str(OVERLOAD_RATE / AGENTS),
         "--duration", str(LOAD_S), "--seed", str(i)],
        cwd=ROOT, env=agent_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(AGENTS)]
    blasters = [subprocess.Popen(
        [sys.executable, "-m", "tests.support.otlp_raw", "blast", "--endpoint",
         p.otlp_grpc_endpoint, "--duration", str(LOAD_S), "--threads", str(BLASTER_THREADS),
         "--spans", str(BLAST_SPANS), "--attribute-bytes", str(BLAST_ATTRIBUTE_BYTES)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(BLASTERS)]
    idle_rss_mib = status_kib(p.process("collector").pid, "VmRSS") / 1024
    peaks = PeakRss({"collector": p.process("collector").pid,
                     **{f"agent-{i}": a.pid for i, a in enumerate(agents)}})
    try:
        outputs = [proc.communicate(timeout=LOAD_S + 120) for proc in agents + blasters]
    finally:
        for proc in agents + blasters:
            if proc.poll() is None:
                proc.kill()
    rss = peaks.stop()
    agent_runs = [{"code": a.returncode, "summary": json.loads(out.splitlines()[-1]),
                   "stats": agent_stats(err), "stderr": err}
                  for a, (out, err) in zip(agents, outputs[:AGENTS])]
    blasts = [json.loads(out) for out, _ in outputs[AGENTS:]]
    return {"rss_mib": rss, "idle_rss_mib": idle_rss_mib, "agents": agent_runs,
            "blasts": blasts}


def collector_counts(p: Pipeline, name: str) -> dict[str, float]:
    return {s.labels["transport"]: s.value for s in scrape(p.collector_telemetry_url)
            if s.name == name}


def test_collector_memory_stays_bounded(overloaded) -> None:
    p, load = overloaded
    # The limits were in force: GOMEMLIMIT derived from the limit the test set.
    assert p.collector.env()["GOMEMLIMIT"] == f"{int(LIMIT_MIB * 0.8)}MiB"
    environ = Path(f"/proc/{p.process('collector').pid}/environ").read_bytes().split(b"\0")
    assert f"GOMEMLIMIT={int(LIMIT_MIB * 0.8)}MiB".encode() in environ
    peak, bound = load["rss_mib"]["collector"], collector_rss_bound_mib(load["idle_rss_mib"])
    assert peak <= bound, (f"collector peak RSS {peak:.0f} MiB > {bound:.0f} MiB (idle "
                           f"{load['idle_rss_mib']:.0f} MiB, limit_mib={LIMIT_MIB})")
    # It was loaded, and it still serves.
    assert sum(b["spans_sent"] for b in load["blasts"]) > 20 * BLAST_SPANS
    wait_until(lambda: p.collector.process.running(), 1, what="collector running")


def test_refusals_are_counted_and_collector_refusing_data_fires(overloaded) -> None:
    p, load = overloaded
    refused = {b["codes"].get("UNAVAILABLE", 0) for b in load["blasts"]}
    assert max(refused) > 0, load["blasts"]  # the raw senders saw UNAVAILABLE
    p.wait_for('sum by (transport) (otelcol_receiver_refused_spans{job="otel-collector-telemetry"})',
               lambda r: {x["metric"]["transport"] for x in r if float(x["value"][1]) > 0}
               >= {"grpc", "http"}, timeout=30)
    expr = alert_expr("CollectorRefusingData")
    firing = p.wait_for(expr, lambda r: any(x["metric"].get("signal") == "traces" for x in r),
                        timeout=30)
    assert all(x["metric"]["receiver"] == "otlp" for x in firing)

    def alert_firing() -> bool:
        return any(a["labels"]["alertname"] == "CollectorRefusingData"
                   and a["state"] == "firing" for a in p.alerts())

    wait_until(alert_firing, 30, interval=0.5, what="CollectorRefusingData firing")


def test_agents_stay_bounded_raise_nothing_and_count_their_losses(overloaded) -> None:
    p, load = overloaded
    runs = load["agents"]
    for i, run in enumerate(runs):
        assert run["code"] == 0, run["stderr"][-2000:]
        assert "Traceback" not in run["stderr"], run["stderr"][-3000:]
        assert run["summary"]["executions"] == int(OVERLOAD_RATE / AGENTS * LOAD_S)
        assert run["stats"]["internal_errors"] == 0
        peak = load["rss_mib"][f"agent-{i}"]
        assert 0 < peak <= AGENT_RSS_BOUND_MIB, f"agent-{i} peak RSS {peak:.0f} MiB"
    stats = [r["stats"] for r in runs]
    lost = sum(s["spans_dropped"] + s["spans_export_failed"] for s in stats)
    exported = sum(s["spans_exported"] for s in stats)
    # Refused by the collector (its own count) ...
    assert collector_counts(p, "otelcol_receiver_refused_spans").get("http", 0) > 0
    # ... and what the agents count as delivered is exactly what the collector accepted from
    # them (OTLP/HTTP is theirs alone): everything else they ended is in their loss counters.
    assert collector_counts(p, "otelcol_receiver_accepted_spans").get("http") == exported
    assert lost > 0  # refused for longer than an export's 2 s: counted, never raised
    # Ground truth: one span per execution, tool call attempt, approval and LLM call; each is
    # either delivered or counted lost, none is silently gone.
    ended = sum(r["summary"]["executions"] + r["summary"]["tool_calls"]
                + sum(r["summary"]["approvals"].values()) + r["summary"]["llm"]["calls"]
                for r in runs)
    assert exported + lost == ended
    print(f"\noverload: agents exported {exported} spans, counted {lost} lost; "
          f"collector idle RSS {load['idle_rss_mib']:.0f} MiB; peak RSS {load['rss_mib']}; "
          f"raw senders {load['blasts']}")
