"""The pipeline's own cost and speed: our collector against a plain one, and our agents end to end.

    python -m bench.pipeline --json     # one JSON line (about 10 minutes)
    python -m bench.pipeline            # the same as a short report
    python -m bench.pipeline --quick    # smoke run: one 5k/s step per signal, few samples (< 1 min)
    python -m bench.pipeline --breakdown  # where our collector's CPU goes (traces, 10k spans/s)

Part 1, the collector alone. telemetrygen (the collector project's load generator, built from
its module: `bash components/build.sh telemetrygen`) sends OTLP/gRPC at increasing rates, in
the same run and step by step side by side, to

- ours: the product config (otel-collector-config.yaml) with its real processors and real
  exporters (queues, batching, gzip), whose backends are a discarding collector
  (bench/collector-discard.yaml) instead of Prometheus and Jaeger, so that the backends are
  never the bottleneck and what is measured is our collector's cost;
- the baseline: bench/collector-discard.yaml fed directly (OTLP in, debug exporter at `basic`
  with its log dropped, no processors), the floor any collector pays for OTLP in.

Per step: CPU from /proc/<pid>/stat (utime + stime) over the step, RSS from /proc/<pid>/status,
and loss from three counts that must agree: what telemetrygen says it generated, what the
collector accepted (otelcol_receiver_accepted_*, with refused == 0) and what it sent
(otelcol_exporter_sent_*, with send_failed == 0 and enqueue_failed == 0), and for ours what the
discarding collector behind it accepted. A rate counts as sustained when the generator reached
it (at least 90 % of the target over the step) and nothing was lost; the ramp stops at the first
rate that is not.

Part 2, our agents end to end through the real pipeline (collector, Prometheus, Jaeger: the
Pipeline harness): the simulated agent (`python -m services.agent run`, 2 processes, open loop,
no simulated waits) at rising rates; `agent_executions_per_s` is the highest rate whose ground
truth all arrived (executions in Prometheus, execution and tool-call spans in Jaeger); `lost` is
ground truth minus what arrived at the rates reported (agents and collector; must be 0);
freshness = from the end of an execution in a long-running agent until Prometheus' count shows
it (metrics exported every `--export-interval` seconds, executions at random phases); the p99 of
one agent execution (bench/overhead.py's reference execution, 200 per second) with the
collector up and with it down (a closed port).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.stack import components
from services.stack.collector import Collector
from services.stack.components import REPO_ROOT
from services.stack.pipeline import Pipeline
from services.stack.probe import scrape
from services.stack.process import ManagedProcess, free_port, wait_until
from services.stack.prometheus_api import value

DISCARD_CONFIG = Path(__file__).with_name("collector-discard.yaml")
# The collector project's published testbed figures (OTLP receiver and exporter, 10k items/s):
# CPU as % of one core, RAM in MiB, both averages.
TESTBED = {"spans": {"rate": 10_000, "cpu_pct": 6.2, "rss_mib": 55},
           "points": {"rate": 10_000, "cpu_pct": 25.7, "rss_mib": 55}}
TARGET_RATE = {"spans": 20_000, "points": 10_000}
SIGNALS = {"spans": "traces", "points": "metrics"}
# Collector self-metric names per signal (our telemetry config drops the type suffix).
COUNTERS = {"spans": "spans", "points": "metric_points"}
DRAIN_S = 60.0                   # how long a step's data may take to leave the collector
SUSTAINED = 0.9                  # share of the target rate the generator must have reached
PER_WORKER = 500                 # telemetrygen items/s per worker (its limiter falls behind above)
PER_PROCESS = 5_000              # items/s per telemetrygen process (see run_generator)
CLK_TCK = os.sysconf("SC_CLK_TCK")
_GENERATED = re.compile(r"(traces|metrics) generated\s+(\{.*\})")
_WORKER_DONE = re.compile(
    r"worker \d+ \(.*?\): (\d+) executions in ([0-9.]+)s; telemetry (\{.*\})")


# --- processes -------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (fields 14 and 15 of /proc/<pid>/stat), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class RssSampler:
    """Samples a process' RSS every `interval` seconds in a thread while in the `with` block."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid, self.interval, self.samples = pid, interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(rss_mib(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def telemetrygen() -> Path:
    """The telemetrygen binary, built (cached, see components/build.sh) when missing."""
    if components.TELEMETRYGEN.find() is None:
        subprocess.run(["bash", str(REPO_ROOT / "components" / "build.sh"), "telemetrygen"],
                       check=True, stdout=sys.stderr)
    return components.TELEMETRYGEN.require()


@dataclass
class Target:
    """A running collector under load: its process and its self-telemetry endpoint."""
    name: str
    process: ManagedProcess
    telemetry_url: str
    otlp_grpc: str            # host:port

    @property
    def pid(self) -> int:
        return self.process.pid

    def counters(self, signal: str) -> dict[str, float]:
        """Sums over all components of the collector's own counters for `signal`."""
        unit = COUNTERS[signal]
        names = {"accepted": f"otelcol_receiver_accepted_{unit}",
                 "refused": f"otelcol_receiver_refused_{unit}",
                 "sent": f"otelcol_exporter_sent_{unit}",
                 "send_failed": f"otelcol_exporter_send_failed_{unit}",
                 "enqueue_failed": f"otelcol_exporter_enqueue_failed_{unit}"}
        samples = scrape(self.telemetry_url)
        return {key: sum(s.value for s in samples if s.name in (name, f"{name}_total"))
                for key, name in names.items()}


def discard_collector(workdir: Path, name: str) -> Target:
    grpc, http, health, telemetry = (free_port() for _ in range(4))
    process = ManagedProcess(
        name, [components.COLLECTOR.require(), "--config", str(DISCARD_CONFIG)],
        workdir / f"{name}.log", ready_url=f"http://127.0.0.1:{health}/", cwd=workdir, env={
            "CUGAR_BENCH_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc}",
            "CUGAR_BENCH_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http}",
            "CUGAR_BENCH_HEALTH_ENDPOINT": f"127.0.0.1:{health}",
            "CUGAR_BENCH_TELEMETRY_PORT": str(telemetry)})
    process.start()
    return Target(name, process, f"http://127.0.0.1:{telemetry}/metrics", f"127.0.0.1:{grpc}")


def our_collector(workdir: Path, sink: Target, sink_http: str,
                  overrides: tuple[Path, ...] = ()) -> Target:
    collector = Collector(workdir, overrides=overrides, name="ours", env={
        "CUGAR_COLLECTOR_PROMETHEUS_OTLP_URL": f"http://{sink_http}/v1/metrics",
        "CUGAR_COLLECTOR_TRACES_OTLP_ENDPOINT": sink.otlp_grpc,
        "CUGAR_COLLECTOR_LOG_LEVEL": "warn"})
    collector.start()
    return Target("ours", collector.process, collector.telemetry_url,
                  collector.otlp_grpc_endpoint.removeprefix("http://"))


# --- part 1: the collector under telemetrygen ------------------------------------------------

@dataclass
class Step:
    target: str
    signal: str
    rate: int                 # items/s asked of the generator
    seconds: float
    generated: int = 0
    accepted: float = 0
    sent: float = 0
    sink_accepted: float | None = None
    refused: float = 0
    failed: float = 0
    cpu_s: float = 0.0
    rss_mib: float = 0.0
    backlog: bool = False
    drain_s: float = 0.0      # from the generator's exit until everything was exported
    problems: list[str] = field(default_factory=list)

    @property
    def achieved(self) -> float:
        return self.generated / self.seconds

    @property
    def lost(self) -> float:
        return self.generated - min(self.accepted, self.sent, self.sink_accepted
                                    if self.sink_accepted is not None else self.sent)

    @property
    def clean(self) -> bool:
        """Nothing lost, refused or failed, and everything exported after the step."""
        return not (self.lost or self.refused or self.failed or self.backlog)

    @property
    def reached(self) -> bool:
        """The generator reached the rate asked of it."""
        return self.achieved >= SUSTAINED * self.rate

    @property
    def cpu_pct_per_10k(self) -> float:
        """% of one core per 10k items/s: CPU seconds per item, scaled."""
        return 100 * self.cpu_s / max(self.generated, 1) * 10_000

    def row(self) -> dict:
        return {"target": self.target, "signal": self.signal, "rate": self.rate,
                "achieved_per_s": round(self.achieved), "generated": self.generated,
                "accepted": self.accepted, "sent": self.sent,
                "sink_accepted": self.sink_accepted, "refused": self.refused,
                "failed": self.failed, "clean": self.clean, "reached": self.reached,
                "lost": int(self.lost), "cpu_pct": round(100 * self.cpu_s / self.seconds, 1),
                "cpu_pct_per_10k": round(self.cpu_pct_per_10k, 2),
                "rss_mib": round(self.rss_mib, 1), "drain_s": round(self.drain_s, 2),
                "problems": self.problems}


def run_generator(binary: Path, signal: str, endpoint: str, rate: int, seconds: float) -> int:
    """telemetrygen at `rate` items/s for `seconds` against `endpoint`; the items it generated.

    The load is split over processes of PER_PROCESS items/s each, as many senders would send:
    one telemetrygen exports its spans one batch at a time (one Go SDK batch span processor,
    which drops what its queue cannot hold), so a single one turns the collector's latency
    into loss long before the collector runs out of CPU."""
    processes = max(1, math.ceil(rate / PER_PROCESS))
    workers = max(1, math.ceil(rate / processes / PER_WORKER))
    argv = [str(binary), SIGNALS[signal], "--otlp-endpoint", endpoint, "--otlp-insecure",
            "--workers", str(workers), "--rate", f"{rate / processes / workers:.3f}",
            "--duration", f"{seconds}s", "--batch-size", "500", "--service", f"bench-{signal}",
            "--telemetry-attributes", 'gen_ai.tool.name="crm_lookup"']
    if signal == "points":
        argv += ["--metric-type", "Sum"]
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile("w+")) for _ in range(processes)]
        procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, text=True)
                 for log in logs]
        total = 0
        for proc, log in zip(procs, logs):
            code = proc.wait(timeout=seconds + 60)
            log.seek(0)
            text = log.read()
            if code != 0:
                raise RuntimeError(f"telemetrygen exited {code}:\n{text[-2000:]}")
            counts = [json.loads(m.group(2)).get("traces" if signal == "spans" else "metrics", 0)
                      for m in _GENERATED.finditer(text)]
            if len(counts) != workers:
                raise RuntimeError(f"telemetrygen reported {len(counts)} of {workers} workers:"
                                   f"\n{text[-2000:]}")
            total += sum(counts)
    # Each trace is a root span plus --child-spans (default 1) children.
    return total * (2 if signal == "spans" else 1)


def measure_step(binary: Path, target: Target, sink: Target | None, signal: str, rate: int,
                 seconds: float) -> Step:
    step = Step(target.name, signal, rate, seconds)
    before = target.counters(signal)
    sink_before = sink.counters(signal) if sink else None
    cpu_before = cpu_seconds(target.pid)
    with RssSampler(target.pid) as rss:
        step.generated = run_generator(binary, signal, target.otlp_grpc, rate, seconds)
        stopped = time.monotonic()

        def delta(t: Target, base: dict) -> dict:
            now = t.counters(signal)
            return {k: now[k] - base[k] for k in now}

        def drained() -> bool:
            d = delta(target, before)
            done = d["accepted"] + d["refused"] >= step.generated and d["sent"] + d[
                "send_failed"] + d["enqueue_failed"] >= d["accepted"]
            if done and sink:
                done = delta(sink, sink_before)["accepted"] >= d["sent"]
            return done

        try:
            wait_until(drained, DRAIN_S, interval=0.1, what=f"{target.name} to export the step")
        except TimeoutError:
            step.backlog = True
            step.problems.append(f"not all arrived and exported {DRAIN_S:.0f} s after the "
                                 "generator stopped")
        step.drain_s = time.monotonic() - stopped
    step.cpu_s = cpu_seconds(target.pid) - cpu_before
    step.rss_mib = statistics.fmean(rss.samples)
    d = delta(target, before)
    step.accepted, step.sent = d["accepted"], d["sent"]
    step.refused, step.failed = d["refused"], d["send_failed"] + d["enqueue_failed"]
    if sink:
        step.sink_accepted = delta(sink, sink_before)["accepted"]
    if step.achieved < SUSTAINED * rate:
        step.problems.append(f"generator reached {step.achieved:.0f}/s of {rate}/s")
    if step.lost or step.refused or step.failed:
        step.problems.append(f"lost {step.lost:.0f} (generated {step.generated}, accepted "
                             f"{step.accepted:.0f}, sent {step.sent:.0f}, refused "
                             f"{step.refused:.0f}, failed {step.failed:.0f})")
    return step


def collector_part(workdir: Path, quick: bool, seconds: float) -> dict:
    binary = telemetrygen()
    rates = {"spans": [5_000] if quick else [10_000, 20_000, 30_000, 40_000, 50_000, 60_000],
             "points": [5_000] if quick else [10_000, 20_000, 30_000, 40_000]}
    steps: list[Step] = []
    sink = baseline = ours = None
    try:
        sink = discard_collector(workdir, "sink")
        sink_http = sink.process.env["CUGAR_BENCH_OTLP_HTTP_ENDPOINT"]
        baseline = discard_collector(workdir, "baseline")
        ours = our_collector(workdir, sink, sink_http)
        for signal, ladder in rates.items():
            for rate in ladder:
                pair = [measure_step(binary, baseline, None, signal, rate, seconds),
                        measure_step(binary, ours, sink, signal, rate, seconds)]
                steps += pair
                if not (pair[1].clean and pair[1].reached):
                    break
        rss_max = max(rss_mib(ours.pid), *(s.rss_mib for s in steps if s.target == "ours"))
    finally:
        for target in (ours, baseline, sink):
            if target:
                target.process.stop()
    return summarise(steps, rss_max)


def summarise(steps: list[Step], rss_max: float) -> dict:
    def best(target: str, signal: str) -> float:
        """The highest rate that went through with nothing lost (the rate reached, which
        can be below the rate asked when the generator or the machine was the limit)."""
        return max((s.achieved for s in steps if s.target == target and s.signal == signal
                    and s.clean), default=0.0)

    def reported(target: str, signal: str) -> Step:
        mine = [s for s in steps if s.target == target and s.signal == signal]
        return max((s for s in mine if s.clean), key=lambda s: s.achieved, default=mine[0])

    def limit(signal: str) -> str:
        """Why the ramp stopped, with what the baseline did at the same rate."""
        ours = [s for s in steps if s.target == "ours" and s.signal == signal]
        last = ours[-1]
        if last.clean and last.reached:
            return f"none up to {last.rate}/s (the highest rate tried)"
        base = next(s for s in steps if s.target == "baseline" and s.signal == signal
                    and s.rate == last.rate)
        return (f"at {last.rate}/s: {'; '.join(last.problems)}; the baseline reached "
                f"{base.achieved:.0f}/s at the same rate" + ("" if base.clean else
                                                              ", with loss"))

    def at_10k(target: str, signal: str) -> Step:
        """The step at the testbed's rate (10k/s), or the nearest one (--quick runs 5k/s)."""
        return min((s for s in steps if s.target == target and s.signal == signal),
                   key=lambda s: abs(s.rate - TESTBED[signal]["rate"]))

    out = {
        "collector_spans_per_s": round(best("ours", "spans")),
        "collector_points_per_s": round(best("ours", "points")),
        "collector_cpu_pct_per_10k_spans": round(at_10k("ours", "spans").cpu_pct_per_10k, 2),
        "collector_cpu_pct_per_10k_points": round(at_10k("ours", "points").cpu_pct_per_10k, 2),
        "collector_rss_mib": round(at_10k("ours", "spans").rss_mib, 1),
        "collector_rss_max_mib": round(rss_max, 1),
        "baseline_cpu_pct_per_10k_spans": round(at_10k("baseline", "spans").cpu_pct_per_10k, 2),
        "baseline_cpu_pct_per_10k_points": round(at_10k("baseline", "points").cpu_pct_per_10k, 2),
        "baseline_spans_per_s": round(best("baseline", "spans")),
        "baseline_points_per_s": round(best("baseline", "points")),
        # At the rates reported (the lowest step's loss when none went through clean).
        "collector_lost": int(sum(reported("ours", sig).lost for sig in SIGNALS)),
        "collector_spans_limit": limit("spans"),
        "collector_points_limit": limit("points"),
        "steps": [s.row() for s in steps],
    }
    return out


# Where our collector's CPU goes (--breakdown): the traces pipeline at 10k spans/s with parts of
# it taken away by an override file (lists replace, maps merge).
TRACES = "service:\n  pipelines:\n    traces:\n      processors: "
TRACES_EXPORTER = "otlp_grpc/traces"
BREAKDOWN = {
    "product config": "",
    "redaction without key patterns": "processors:\n  sensitive_attributes:\n"
                                      "    secret_key_patterns: []\n",
    "redaction without value patterns": "processors:\n  sensitive_attributes:\n"
                                        "    value_patterns: []\n",
    "no redaction": TRACES + "[memory_limiter, transform/traces]\n",
    "in-memory traces queue": f"exporters:\n  {TRACES_EXPORTER}:\n    sending_queue:\n"
                              "      storage: null\n",
    **{f"traces export {codec}": f"exporters:\n  {TRACES_EXPORTER}:\n    compression: {codec}\n"
       for codec in ("none", "snappy", "zstd")},
    "no processors": TRACES + "[]\n",
    # The GenAI connector on every span, as before it got a pipeline of its own with a filter.
    "GenAI branch without its filter": "service:\n  pipelines:\n    traces/genai:\n"
                                       "      processors: [memory_limiter, sensitive_attributes, "
                                       "transform/traces]\n",
}


def breakdown(workdir: Path, seconds: float, rounds: int = 3) -> dict:
    """CPU % of a core per 10k spans/s of each BREAKDOWN variant (median of `rounds` steps).

    Rounds go round-robin over the variants, so a noisy stretch of the machine falls on every
    variant alike rather than on whichever ran during it."""
    binary = telemetrygen()
    sink = discard_collector(workdir, "sink")
    steps: dict[str, list[Step]] = {name: [] for name in BREAKDOWN}
    try:
        for round_ in range(rounds):
            for i, (name, override) in enumerate(BREAKDOWN.items()):
                work = workdir / f"round-{round_}-variant-{i}"
                work.mkdir()
                files: tuple[Path, ...] = ()
                if override:
                    (work / "override.yaml").write_text(override)
                    files = (work / "override.yaml",)
                ours = our_collector(work, sink,
                                     sink.process.env["CUGAR_BENCH_OTLP_HTTP_ENDPOINT"], files)
                try:
                    steps[name].append(measure_step(binary, ours, sink, "spans", 10_000, seconds))
                finally:
                    ours.process.stop()
    finally:
        sink.process.stop()
    return {name: {"cpu_pct_per_10k_spans": round(statistics.median(
                s.cpu_pct_per_10k for s in done), 2), "lost": sum(s.lost for s in done)}
            for name, done in steps.items()}


# --- part 2: our agents end to end -----------------------------------------------------------

def _agent_env(pipeline: Pipeline, service: str, export_interval_s: float) -> dict[str, str]:
    return {**os.environ, **pipeline.agent_env(export_interval_ms=int(export_interval_s * 1000)),
            "OTEL_SERVICE_NAME": service, "OTEL_TRACES_SAMPLER": "always_on"}


def agent_step(pipeline: Pipeline, rate: int, seconds: float,
               export_interval_s: float) -> dict:
    """The simulated agent, 2 processes, open loop at `rate` executions/s for `seconds`, no
    simulated waits; the rate it reached, and what of its ground truth arrived."""
    service = f"bench-agents-{rate}"
    out = subprocess.run(
        [sys.executable, "-m", "services.agent", "run", "--rate", str(rate), "--duration",
         str(seconds), "--processes", "2", "--time-scale", "0", "--seed", str(rate)],
        env=_agent_env(pipeline, service, export_interval_s), cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=seconds + 300)
    if out.returncode != 0:
        raise RuntimeError(f"agent exited {out.returncode}:\n{out.stderr[-2000:]}")
    truth = json.loads(out.stdout.strip().splitlines()[-1])
    workers = [(int(n), float(t), ast.literal_eval(stats))
               for n, t, stats in _WORKER_DONE.findall(out.stderr)]
    if len(workers) != 2:
        raise RuntimeError(f"expected 2 worker lines in the agent's log:\n{out.stderr[-2000:]}")
    achieved = sum(n for n, _, _ in workers) / max(t for _, t, _ in workers)
    expected = {"executions": truth["executions"], "execution_spans": truth["executions"],
                "tool_call_spans": truth["tool_calls"]}
    seen: dict[str, int] = {}

    def complete() -> bool:
        result = pipeline.prometheus.try_query(f'sum(cugar_executions_total{{job="{service}"}})')
        spans = pipeline.spans(service)
        seen.update(executions=int(value(result)) if result else 0,
                    execution_spans=sum(s["name"].startswith("invoke_agent ") for s in spans),
                    tool_call_spans=sum(s["name"].startswith("execute_tool ") for s in spans))
        return all(seen[k] >= v for k, v in expected.items())

    try:
        wait_until(complete, 60, interval=0.5, what="the agents' telemetry to arrive")
    except TimeoutError:
        pass
    # What the agents themselves counted as not exported (tel.stats(): drops, failed exports).
    counted = {k: sum(w[2].get(k, 0) for w in workers) for k in workers[0][2]
               if any(word in k for word in ("drop", "fail", "overflow"))}
    return {"rate": rate, "achieved_per_s": round(achieved, 1), "truth": expected,
            "arrived": dict(seen), "lost": int(sum(abs(expected[k] - seen.get(k, 0))
                                                   for k in expected)),
            "agent_stats": {k: v for k, v in counted.items() if v}}


def agents(pipeline: Pipeline, quick: bool, seconds: float, export_interval_s: float) -> dict:
    """The highest open-loop rate whose telemetry all arrived (the ramp stops at the first
    rate that lost anything or that the agents could not keep)."""
    steps = []
    for rate in [100] if quick else [100, 200, 400, 800, 1600]:
        steps.append(agent_step(pipeline, rate, seconds, export_interval_s))
        if steps[-1]["lost"] or steps[-1]["achieved_per_s"] < SUSTAINED * rate:
            break
    clean = [s for s in steps if not s["lost"]]
    best = max(clean, key=lambda s: s["achieved_per_s"]) if clean else steps[0]
    return {"agent_executions_per_s": best["achieved_per_s"] if clean else 0.0,
            "lost": best["lost"], "agent_steps": steps}


def freshness(pipeline: Pipeline, samples: int, export_interval_s: float) -> dict:
    """Seconds from the end of an execution (in a long-running agent) to Prometheus counting it;
    the executions are spread over the export period at random phases."""
    from bench.overhead import PROFILE, AGENT, CEILING
    from otel.setup import create_telemetry

    service = "bench-freshness"
    env = {k: v for k, v in _agent_env(pipeline, service, export_interval_s).items()
           if k.startswith("OTEL_")}
    tel = create_telemetry(env=env)
    query = f'sum(cugar_executions_total{{job="{service}"}})'
    delays = []
    rng = random.Random(4)
    try:
        for i in range(1, samples + 1):
            with tel.agent.execution(profile=PROFILE, agent_name=AGENT, budget_ceiling=CEILING):
                pass
            ended = time.monotonic()
            wait_until(lambda: (r := pipeline.prometheus.try_query(query)) and value(r) >= i,
                       export_interval_s + 30, interval=0.05, what=f"execution {i} in Prometheus")
            delays.append(time.monotonic() - ended)
            time.sleep(rng.uniform(0, export_interval_s))  # a random phase for the next sample
    finally:
        tel.shutdown()
    delays.sort()
    return {"freshness_p50_s": round(statistics.median(delays), 2),
            "freshness_p95_s": round(_quantile(delays, 0.95), 2),
            "freshness_samples": len(delays)}


def _quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def execution_latency_us(endpoint: str | None, executions: int, rate: float = 200) -> dict:
    """p50 and p99 of bench/overhead.py's reference execution, `rate` per second, OTLP/gRPC to
    `endpoint` (None: a closed port), tracing and metrics on."""
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    from bench.overhead import variant_ours

    endpoint = endpoint or f"http://127.0.0.1:{free_port()}"
    run, stop = variant_ours(lambda: OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=1),
                             lambda: OTLPMetricExporter(endpoint=endpoint, insecure=True,
                                                        timeout=1), tracing=True)
    times = []
    start = time.monotonic()
    try:
        for i in range(executions):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))  # the pace, not a wait
            t0 = time.perf_counter_ns()
            run(i)
            times.append((time.perf_counter_ns() - t0) / 1000)
    finally:
        stop()
    times.sort()
    return {"p50": round(_quantile(times, 0.5), 1), "p99": round(_quantile(times, 0.99), 1)}


def agent_part(workdir: Path, quick: bool, seconds: float, export_interval_s: float) -> dict:
    n = 300 if quick else 3000
    with Pipeline(workdir / "pipeline", alertmanager=False) as pipeline:
        out = agents(pipeline, quick, seconds, export_interval_s)
        out.update(freshness(pipeline, 3 if quick else 20, export_interval_s))
        up = execution_latency_us(pipeline.otlp_grpc_endpoint, n)
    down = execution_latency_us(None, n)
    out.update(agent_p99_us_collector_up=up["p99"], agent_p99_us_collector_down=down["p99"],
               agent_p50_us_collector_up=up["p50"], agent_p50_us_collector_down=down["p50"],
               export_interval_s=export_interval_s)
    return out


# --- report ----------------------------------------------------------------------------------

def verdicts(r: dict) -> dict:
    return {
        "spans_rate": r["collector_spans_per_s"] >= TARGET_RATE["spans"],
        "points_rate": r["collector_points_per_s"] >= TARGET_RATE["points"],
        "spans_cpu": r["collector_cpu_pct_per_10k_spans"] <= 2 * TESTBED["spans"]["cpu_pct"],
        "points_cpu": r["collector_cpu_pct_per_10k_points"] <= 2 * TESTBED["points"]["cpu_pct"],
        "zero_loss": r["lost"] == 0,
        "freshness": r["freshness_p95_s"] <= r["export_interval_s"] + 2,
    }


def run(quick: bool, seconds: float, export_interval_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="cugar-bench-") as work:
        work = Path(work)
        result = collector_part(work, quick, seconds)
        result.update(agent_part(work, quick, seconds, export_interval_s))
    result["lost"] += result["collector_lost"]
    result["targets_met"] = verdicts(result)
    result["testbed"] = TESTBED
    result["quick"] = quick
    result["machine"] = {"cpus": os.cpu_count(), "loadavg_1m": os.getloadavg()[0]}
    return result


def report(r: dict) -> str:
    tb = TESTBED
    lines = [
        "collector, real processors and exporters, backends a discarding collector:",
        f"  sustained, zero loss: {r['collector_spans_per_s']} spans/s (target "
        f"{TARGET_RATE['spans']}), {r['collector_points_per_s']} points/s (target "
        f"{TARGET_RATE['points']})",
        f"  CPU per 10k/s: spans {r['collector_cpu_pct_per_10k_spans']} % of a core "
        f"(baseline {r['baseline_cpu_pct_per_10k_spans']} %, testbed {tb['spans']['cpu_pct']} %), "
        f"points {r['collector_cpu_pct_per_10k_points']} % (baseline "
        f"{r['baseline_cpu_pct_per_10k_points']} %, testbed {tb['points']['cpu_pct']} %)",
        f"  RSS at the 10k spans/s step (or the nearest) {r['collector_rss_mib']} MiB (testbed "
        f"{tb['spans']['rss_mib']}), "
        f"max {r['collector_rss_max_mib']} MiB",
        "  steps:",
    ]
    for s in r["steps"]:
        lines.append(f"    {s['target']:8} {s['signal']:6} {s['rate']:>6}/s: achieved "
                     f"{s['achieved_per_s']:>6}/s, CPU {s['cpu_pct']:>5} % "
                     f"({s['cpu_pct_per_10k']} % per 10k), RSS {s['rss_mib']} MiB"
                     + (f"  [{'; '.join(s['problems'])}]" if s["problems"] else ""))
    lines += [
        f"  ramp stopped: spans {r['collector_spans_limit']}; points "
        f"{r['collector_points_limit']}",
        "agents end to end (collector, Prometheus, Jaeger):",
        f"  {r['agent_executions_per_s']} executions/s with nothing lost (lost {r['lost']})",
        *(f"    {a['rate']:>5}/s: reached {a['achieved_per_s']}/s, lost {a['lost']}"
          + (f", agents counted {a['agent_stats']}" if a["agent_stats"] else "")
          for a in r["agent_steps"]),
        f"  freshness p50 {r['freshness_p50_s']} s, p95 {r['freshness_p95_s']} s "
        f"(export interval {r['export_interval_s']} s)",
        f"  execution p99: {r['agent_p99_us_collector_up']} µs collector up, "
        f"{r['agent_p99_us_collector_down']} µs collector down",
        ("targets met (a --quick run does not ramp: its rates say nothing): " if r["quick"]
         else "targets met: ") + ", ".join(f"{k} {'yes' if v else 'NO'}"
                                    for k, v in r["targets_met"].items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: one 5k/s step per signal, few agent samples")
    parser.add_argument("--breakdown", action="store_true",
                        help="only where our collector's CPU goes: the traces pipeline at "
                        "10k spans/s with parts of it removed")
    parser.add_argument("--step-seconds", type=float, default=None,
                        help="load duration of each step (default 15, quick 3)")
    parser.add_argument("--export-interval", type=float, default=None, metavar="SECONDS",
                        help="the agents' OTEL_METRIC_EXPORT_INTERVAL (default 5, as in "
                        "docker-compose.yml; quick 1)")
    args = parser.parse_args(argv)
    seconds = args.step_seconds or (3.0 if args.quick else 15.0)
    interval = args.export_interval or (1.0 if args.quick else 5.0)
    if args.breakdown:
        with tempfile.TemporaryDirectory(prefix="cugar-bench-") as work:
            result = breakdown(Path(work), seconds)
        print(json.dumps(result) if args.json else "\n".join(
            f"{k}: {v['cpu_pct_per_10k_spans']} % of a core per 10k spans/s"
            for k, v in result.items()))
        return 0
    result = run(args.quick, seconds, interval)
    print(json.dumps(result) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
