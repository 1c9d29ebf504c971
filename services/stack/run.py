"""The main job (`make run`): the whole pipeline with a simulated CUGAr workload, on this machine.

    python -m services.stack.run [--duration S] [--rate R] [--processes P] [--embedded] ...

Starts our collector build, Jaeger, Alertmanager and Prometheus through
services.stack.pipeline.Pipeline, then the API (uvicorn) and the agent workload as managed
processes, on the standard ports (OTLP 4317/4318, Prometheus 9090, Alertmanager 9093, Jaeger
16686, API 8000; a busy one is replaced by a free port and the change printed; --any-ports
uses free ports throughout). It prints the URLs and, every few seconds, the fleet's golden
signals as the API serves them. A child that dies is reported (exit status, log tail) and
restarted with bounded backoff (services/stack/supervisor.py); the line says DEGRADED
meanwhile. Ctrl-C or SIGTERM stops everything (each child is a process group, stopped and
waited for); a bounded run (--duration) ends by reconciling the pipeline's count of executions
with the agents' own.

Modes, by what this machine has:
- collector: everything above;
- EMBEDDED (no collector build, or --embedded): each agent process serves its metrics
  in-process and Prometheus scrapes them directly (no traces, no Alertmanager);
- AGENTS-ONLY (no Prometheus build, e.g. no Go): the agents with their in-process /metrics
  and the API's /health; the golden-signals line is computed here from the agents' /metrics.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType

import httpx
import yaml

from services.agent.worker import Pacing
from services.api.settings import DEFAULT_SERVICE_NAME as API_SERVICE_NAME
from services.stack import components
from services.stack.agent_metrics import AgentMetrics, format_totals
from services.stack.components import BUILD_HINT, REPO_ROOT, MissingComponent
from services.stack.pipeline import (ALERTMANAGER_JOB, API_JOB, COLLECTOR_TELEMETRY_JOB, JAEGER_JOB,
                                     PROMETHEUS_DIR, PROMETHEUS_JOB, Pipeline, PipelineError,
                                     prometheus_process, render_prometheus_config, write_api_key,
                                     write_rules)
from services.stack.ports import choose_ports
from services.stack.process import ManagedProcess, ProcessFailed, free_port, wait_until
from services.stack.supervisor import GaveUp, Supervisor

DEFAULT_WORKDIR = REPO_ROOT / ".run" / "demo"
AGENT_SERVICE_NAME = "cugar-sales"
SUMMARY_WINDOW = "5m"
# How long a bounded run waits for the agents to finish their last executions and flush.
WORKLOAD_EXIT_S = 60.0


class StopRequested(Exception):
    """SIGINT or SIGTERM arrived."""


# --- processes other modules (and tests) reuse ---------------------------------------------
def api_process(workdir: Path, port: int, prometheus_url: str, collector_health_url: str | None,
                telemetry_env: dict[str, str], workers: int = 1, name: str = "api",
                api_key: str | None = None, trace_backend_url: str | None = None) -> ManagedProcess:
    """The API under uvicorn on 127.0.0.1:`port`; ready once /health answers. Without a
    `trace_backend_url` its readiness does not check a trace backend."""
    env = {**telemetry_env, "OTEL_SERVICE_NAME": API_SERVICE_NAME,
           "CUGAR_PROMETHEUS_URL": prometheus_url,
           "CUGAR_COLLECTOR_HEALTH_URL": collector_health_url or "",
           "CUGAR_TRACE_BACKEND_URL": trace_backend_url or "",
           "CUGAR_API_HOST": "127.0.0.1", "CUGAR_API_PORT": str(port),
           "CUGAR_API_KEY": api_key or ""}
    return ManagedProcess(name, [sys.executable, "-m", "services.api", "--workers", str(workers)],
                          workdir / f"{name}.log", ready_url=f"http://127.0.0.1:{port}/health",
                          env=env, cwd=REPO_ROOT)


def agent_argv(rate: float, duration: float, processes: int, time_scale: float,
               extra: list[str] | None = None) -> list[str]:
    return [sys.executable, "-m", "services.agent", "run", "--rate", str(rate), "--duration",
            str(duration), "--processes", str(processes), "--time-scale", str(time_scale),
            *(extra or [])]


# --- the terminal summary ------------------------------------------------------------------
def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}ms"


def _local_time(rfc3339: str | None) -> str:
    if not rfc3339:
        return "an unknown time"
    return f"{datetime.fromisoformat(rfc3339.replace('Z', '+00:00')).astimezone():%H:%M:%S}"


def format_status(d: dict) -> str:
    """"" while /dashboard says the pipeline delivers, else "pipeline DEGRADED: <component>
    since <local time>, ..." (the API's `degraded` list, derived from Prometheus' samples)."""
    items = d.get("degraded") or []
    if d.get("status", "ok") == "ok" or not items:
        return ""
    since: dict[str, str | None] = {}  # one entry per component: its earliest trouble
    for item in items:
        name, when = item["component"], item.get("since")
        if name not in since or (when and (since[name] is None or when < since[name])):
            since[name] = when
    return "pipeline DEGRADED: " + ", ".join(
        f"{name} since {_local_time(when)}" for name, when in since.items())


def format_summary(d: dict) -> str:
    """One line of golden signals from a /dashboard body ('-' = no traffic in the window, or
    not shown because the window's data is partial), led by the pipeline's status."""
    status = format_status(d)
    return f"{status} | {_format_numbers(d)}" if status else _format_numbers(d)


def _format_numbers(d: dict) -> str:
    g, e = d["golden_signals"], d["executions"]
    lat = g["latency_ms"]
    partial = bool(g.get("partial"))
    window = (f"PARTIAL window {d['time_range']['window']} (rates and latencies not shown, "
              f"counts are lower bounds)" if partial else f"window {d['time_range']['window']}")
    if not e["total"]:
        return f"{window}: no executions yet (golden signals absent)"
    steps = "-" if g["steps_per_execution"] is None else f"{g['steps_per_execution']:.2f}"
    return (f"{window}: executions{'>=' if partial else '='}{e['total']} "
            f"(ok {e['successful']} / failed {e['failed']}) success={_pct(g['success_rate'])} "
            f"error={_pct(g['error_rate'])} p50={_ms(lat['p50'])} p95={_ms(lat['p95'])} "
            f"p99={_ms(lat['p99'])} tool_errors={_pct(g['tool_error_rate'])} "
            f"budget={_pct(g['budget_utilization'])} approval_wait={_ms(g['approval_wait_time_ms'])} "
            f"steps/exec={steps}")


def fetch_dashboard(api_url: str, api_key: str | None,
                    window: str = SUMMARY_WINDOW) -> dict | str:
    """The /dashboard body, or a line saying why there is none."""
    headers = {"Accept": "application/json", **({"X-API-Key": api_key} if api_key else {})}
    try:
        resp = httpx.get(f"{api_url}/dashboard", params={"window": window},
                         headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        return f"API unreachable: {type(exc).__name__}: {exc}"
    if resp.status_code == 503 and resp.headers.get("content-type") == "application/json":
        body = resp.json()
        if body.get("status") == "unavailable":
            return f"UNAVAILABLE (no numbers): {body.get('detail')}"
    if resp.status_code != 200:
        return f"API answered HTTP {resp.status_code}: {resp.text[:200]}"
    return resp.json()


def fetch_summary(api_url: str, api_key: str | None) -> str:
    body = fetch_dashboard(api_url, api_key)
    return body if isinstance(body, str) else format_summary(body)


_DURATION = re.compile(r"^([0-9]+)(ms|s|m|h)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def duration_seconds(text: str) -> float:
    """A simple Prometheus duration (e.g. 500ms, 15s, 1m) in seconds."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"expected a duration such as 15s, 500ms or 1m, got {text!r}")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def whole_run_window(seconds: float) -> str:
    """A /dashboard window (whole minutes, 1m..24h) that covers `seconds` of run."""
    return f"{min(math.ceil(seconds / 60) + 1, 24 * 60)}m"


def agent_summary(log_path: Path) -> dict | None:
    """The agent CLI's ground truth: the last JSON object line of its log."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


# --- embedded mode: Prometheus scrapes the agent processes directly --------------------------
def embedded_prometheus(workdir: Path, targets: list[str], api_target: str | None,
                        scrape_interval: str, evaluation_interval: str,
                        api_key: str | None, port: int = 0) -> tuple[ManagedProcess, str]:
    """Prometheus with the repository's config and rules, scraping the agents' in-process
    /metrics endpoints (the alternative metrics path's job, so the rules apply unchanged), on
    `port` (0: a free one)."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = render_prometheus_config(
        yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text()),
        scrape_interval=scrape_interval, evaluation_interval=evaluation_interval,
        targets={COLLECTOR_TELEMETRY_JOB: None, JAEGER_JOB: None, ALERTMANAGER_JOB: None,
                 PROMETHEUS_JOB: f"127.0.0.1:{port}", API_JOB: api_target},
        alertmanager=None, rules_glob=write_rules(workdir / "rules"),
        api_key_file=write_api_key(workdir, api_key), metrics_targets=targets)
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return prometheus_process(workdir, port, path), f"http://127.0.0.1:{port}"


# --- the run -------------------------------------------------------------------------------
COLLECTOR_MODE, EMBEDDED_MODE, AGENTS_ONLY_MODE = "collector", "EMBEDDED", "AGENTS-ONLY"
MODE_PORTS = {
    COLLECTOR_MODE: ("otlp_grpc", "otlp_http", "telemetry", "exporter", "health", "prometheus",
                     "alertmanager", "jaeger_ui"),
    EMBEDDED_MODE: ("prometheus",),
    AGENTS_ONLY_MODE: (),
}
GET_EVERYTHING = ("install Go, then run `make deps` (it builds the collector, Prometheus, "
                  "Alertmanager and Jaeger once and caches them in ~/.cache/cugar)")
AGENTS_ONLY_NOTE = ("from the agents' own /metrics; no Prometheus, alerting or traces in this "
                    "mode: install Go, then `make deps`")
TICK_S = 0.25  # how often the watch loop looks at its children


@dataclass(frozen=True)
class Count:
    """Executions counted by the pipeline (or the agents' /metrics) and the line showing it."""

    total: int
    successful: int
    failed: int
    line: str


def merged_summaries(logs: list[Path]) -> dict | None:
    """The agents' ground truth summed over their logs (None when one printed no summary)."""
    parts = [agent_summary(log) for log in logs]
    if not parts or any(p is None for p in parts):
        return None
    return {k: sum(p[k] for p in parts) for k in ("executions", "successful", "failed")}


class Run:
    def __init__(self, args: argparse.Namespace, say: Callable[[str], None]) -> None:
        self.args = args
        self.say = say
        self.workdir: Path = args.workdir.resolve()
        self.api_key = os.environ.get("CUGAR_API_KEY") or None
        self.mode = COLLECTOR_MODE
        self.pipeline: Pipeline | None = None
        self.processes: list[ManagedProcess] = []  # ours, in start order
        self.workload: list[ManagedProcess] = []
        self.agent_metrics: AgentMetrics | None = None  # agents-only mode
        self.end_gate: Path | None = None  # bounded embedded and agents-only runs (reconcile)
        self.api_url = ""
        self.started_at = time.time()
        self.supervisor = Supervisor(say, on_restart=lambda _proc: self._write_pids())

    def _launch(self, proc: ManagedProcess, timeout: float = 60.0) -> ManagedProcess:
        self.processes.append(proc)  # registered first: a failed start is still stopped
        return proc.start(timeout=timeout)

    def _agent_extra(self) -> list[str]:
        extra = []
        for fail in self.args.fail or []:
            extra += ["--fail", fail]
        if self.args.seed is not None:
            extra += ["--seed", str(self.args.seed)]
        if self.end_gate is not None:
            extra += ["--end-gate", str(self.end_gate)]
        return extra

    def start(self, mode: str) -> None:
        a = self.args
        self.mode = mode
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        ports, moved = choose_ports((*MODE_PORTS[mode], "api"), a.any_ports,
                                    fixed={"api": a.api_port})
        for line in moved:
            self.say(line)
        self.api_url = f"http://127.0.0.1:{ports['api']}"
        duration = a.duration if a.duration else 10 * 365 * 24 * 3600.0
        if mode != COLLECTOR_MODE:
            # The agents' last counts must be scraped before they exit: a bounded run holds
            # them, serving /metrics, until the counts are in (see reconcile). No start gate is
            # needed: their OpenMetrics `_created` samples give Prometheus each series' start.
            self.end_gate = self.workdir / "gates" / "end" if a.duration else None
        agent_env = {"OTEL_SERVICE_NAME": AGENT_SERVICE_NAME,
                     "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=local"}
        if mode == COLLECTOR_MODE:
            urls = self._start_pipeline(ports, duration, agent_env)
        else:
            urls = self._start_agents_in_process(mode, ports, duration, agent_env)
        for proc in (self.pipeline.processes if self.pipeline else []) + self.processes:
            self.supervisor.watch(proc, finished_ok=proc in self.workload and bool(a.duration))
        self._write_pids()
        self.say("")
        self.say(f"CUGAr telemetry pipeline is up ({mode} mode)")
        width = max(len(k) for k in urls)
        for label, url in urls.items():
            self.say(f"  {label.ljust(width)}  {url}")
        self.say(f"Workload: {a.rate:g} executions/s over {a.processes} agent process(es), "
                 f"time scale {a.time_scale:g}"
                 + (f", for {a.duration:g}s" if a.duration else "") + ". Ctrl-C stops everything.")
        if self.pipeline is not None:
            self.say(f"Send your own service's telemetry here: OTEL_EXPORTER_OTLP_ENDPOINT="
                     f"{self.pipeline.otlp_grpc_endpoint} (gRPC), or "
                     f"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_EXPORTER_OTLP_ENDPOINT="
                     f"{self.pipeline.otlp_http_endpoint}")
        self.say("")

    def _write_pids(self) -> None:
        """`<workdir>/pids.json`: each supervised child's name and current pid."""
        pids = {proc.name: proc.pid for proc in self.supervisor.processes}
        (self.workdir / "pids.json").write_text(json.dumps(pids, indent=1) + "\n")

    def _start_pipeline(self, ports: dict[str, int], duration: float,
                        agent_env: dict[str, str]) -> dict[str, str]:
        a = self.args
        with_alertmanager = components.ALERTMANAGER.find() is not None
        with_jaeger = components.JAEGER.find() is not None
        for present, what in ((with_alertmanager, "Alertmanager (no alert notifications)"),
                              (with_jaeger, "Jaeger (traces go to a file in the workdir)")):
            if not present:
                self.say(f"NOTE: running without {what}; {BUILD_HINT}")
        self.say("starting " + ", ".join(["Jaeger"] * with_jaeger + ["the collector"]
                                         + ["Alertmanager"] * with_alertmanager
                                         + ["Prometheus"]) + " ...")
        pipeline_ports = {k: v for k, v in ports.items() if k != "api"}
        self.pipeline = Pipeline(self.workdir / "pipeline", scrape_interval=a.scrape_interval,
                                 evaluation_interval=a.scrape_interval,
                                 alertmanager=with_alertmanager, jaeger=with_jaeger,
                                 api_target=self.api_url.removeprefix("http://"),
                                 api_key=self.api_key, ports=pipeline_ports,
                                 webhook_base_url=self.api_url)  # POST /alerts/<severity>
        self.pipeline.start()
        p = self.pipeline
        self.say("starting the API and the agent workload ...")
        self._launch(api_process(self.workdir, ports["api"], p.prometheus_url,
                                 p.collector_health_url,
                                 p.agent_env(export_interval_ms=a.export_interval_ms),
                                 workers=a.api_workers, api_key=self.api_key,
                                 trace_backend_url=p.jaeger_url))
        self.workload.append(self._launch(ManagedProcess(
            "agent", agent_argv(a.rate, duration, a.processes, a.time_scale, self._agent_extra()),
            self.workdir / "agent.log",
            env={**p.agent_env(export_interval_ms=a.export_interval_ms), **agent_env},
            cwd=REPO_ROOT)))
        return {"API / live dashboard": f"{self.api_url}/dashboard",
                "API docs": f"{self.api_url}/docs",
                "API readiness": f"{self.api_url}/health/ready",
                "Prometheus": p.prometheus_url,
                "Alertmanager": p.alertmanager_url or "- (not built)",
                "Collector OTLP": f"gRPC {p.otlp_grpc_endpoint}  HTTP {p.otlp_http_endpoint}",
                "Jaeger UI (traces)": p.jaeger_url or f"- (traces in {p.traces_file})",
                "Logs": str(self.workdir)}

    def _start_agents_in_process(self, mode: str, ports: dict[str, int], duration: float,
                                 agent_env: dict[str, str]) -> dict[str, str]:
        """Embedded and agents-only modes: each agent process serves its own /metrics."""
        a = self.args
        metrics_ports = [free_port() for _ in range(a.processes)]
        endpoints = [f"http://127.0.0.1:{port}/metrics" for port in metrics_ports]
        no_export = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
        urls: dict[str, str] = {}
        if mode == EMBEDDED_MODE:
            prometheus, prometheus_url = embedded_prometheus(
                self.workdir, [f"127.0.0.1:{port}" for port in metrics_ports],
                self.api_url.removeprefix("http://"), a.scrape_interval, a.scrape_interval,
                self.api_key, port=ports["prometheus"])
            self.say("starting Prometheus ...")
            self._launch(prometheus)
            urls = {"API / live dashboard": f"{self.api_url}/dashboard",
                    "API docs": f"{self.api_url}/docs", "Prometheus": prometheus_url}
        else:
            prometheus_url = f"http://127.0.0.1:{free_port()}"  # nothing answers there
            self.agent_metrics = AgentMetrics(endpoints)
            urls = {"API health": f"{self.api_url}/health (its /dashboard needs Prometheus)"}
        self.say("starting the API and the agent workload ...")
        self._launch(api_process(self.workdir, ports["api"], prometheus_url, None, no_export,
                                 workers=a.api_workers, api_key=self.api_key))
        rate = a.rate / a.processes
        for i, port in enumerate(metrics_ports):
            proc = ManagedProcess(
                f"agent-{i}", agent_argv(rate, duration, 1, a.time_scale, self._agent_extra()),
                self.workdir / f"agent-{i}.log",
                env={**no_export, **agent_env, "CUGAR_EMBEDDED_PROMETHEUS_PORT": str(port)},
                cwd=REPO_ROOT)
            self.workload.append(self._launch(proc))
        return {**urls, "Agent /metrics": ", ".join(endpoints), "Logs": str(self.workdir)}

    @staticmethod
    def _open(gate: Path) -> None:
        gate.parent.mkdir(parents=True, exist_ok=True)
        gate.touch()

    # --- watching ------------------------------------------------------------------------
    def count(self, window: str = SUMMARY_WINDOW) -> Count | str:
        """What the pipeline counts now over `window` (agents-only: since start), or why not."""
        if self.agent_metrics is not None:
            errors = self.agent_metrics.poll()
            t = self.agent_metrics.totals()
            line = f"{format_totals(t)}  [{AGENTS_ONLY_NOTE}]"
            if len(errors) == len(self.agent_metrics.urls):
                line += " (no agent answers its /metrics)"
            return Count(t.executions, t.successful, t.failed, line)
        body = fetch_dashboard(self.api_url, self.api_key, window)
        if isinstance(body, str):
            return body
        e = body["executions"]
        return Count(e["total"], e["successful"], e["failed"], format_summary(body))

    def summary_line(self) -> tuple[str, bool]:
        """The terminal line (timestamp, DEGRADED status, golden signals); True when it has
        numbers."""
        count = self.count()
        text = count if isinstance(count, str) else count.line
        status = self.supervisor.status()
        line = f"[{datetime.now():%H:%M:%S}] " + (f"{status} | {text}" if status else text)
        return line, isinstance(count, Count) and count.total > 0

    def watch(self) -> int:
        """Print the golden signals every `refresh` seconds until the duration ends (the first
        numbers as soon as there are any), and keep every child running
        (services/stack/supervisor.py)."""
        a = self.args
        deadline = time.monotonic() + a.duration if a.duration else None
        next_line = next_look = time.monotonic()
        numbers = False
        shown_outages: set[str] = set()
        while True:
            try:
                self.supervisor.check()
            except GaveUp as exc:
                self.say(f"{exc}; stopping the run")
                return 1
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return self.reconcile()
            outages = {o.name for o in self.supervisor.outages()}
            if outages - shown_outages:  # a child just died: say DEGRADED now
                next_look = next_line = now
            shown_outages = outages
            if now >= next_look:
                line, has_numbers = self.summary_line()
                if now >= next_line or (has_numbers and not numbers):
                    self.say(line)
                    next_line = time.monotonic() + a.refresh
                    numbers = numbers or has_numbers
                # Until the first numbers, look every second; then every `refresh`.
                next_look = time.monotonic() + (a.refresh if numbers else min(a.refresh, 1.0))
                next_look = min(next_look, next_line)
            until = min(next_look, deadline if deadline is not None else next_look)
            time.sleep(min(TICK_S, max(until - time.monotonic(), 0.0)))

    def planned_executions(self) -> int:
        """How many executions the agents play in a bounded run (uninterrupted)."""
        a = self.args  # embedded and agents-only modes: one agent process per --processes
        return a.processes * Pacing(rate=a.rate / a.processes,
                                    duration=a.duration).total_executions()

    def reconcile(self) -> int:
        """After a bounded run: let the workload finish and flush, then check that the
        pipeline counts exactly the executions the agents counted (non-zero exit when not).

        In embedded and agents-only modes the agents hold their final counts in /metrics (the
        end gate) until they have been counted: an exited agent's in-process /metrics is gone."""
        a = self.args
        self.say("workload duration reached; waiting for the agents to finish and flush ...")
        window = whole_run_window(time.time() - self.started_at + WORKLOAD_EXIT_S)
        # The last export travels: agent -> collector -> next scrape -> next rule evaluation.
        settle_s = 3 * a.scrape_interval_s + 2 * a.export_interval_ms / 1000 + 10
        last: Count | str = ""

        def counted(expected: int) -> Callable[[], bool]:
            def check() -> bool:
                nonlocal last
                last = self.count(window)
                return isinstance(last, Count) and last.total == expected
            return check

        if self.end_gate is not None:
            planned = self.planned_executions()
            try:
                wait_until(counted(planned), WORKLOAD_EXIT_S + settle_s, interval=0.5,
                           what=f"the agents' {planned} executions to be counted")
            except TimeoutError as exc:
                self.say(f"{exc}")
            self._open(self.end_gate)
        try:
            wait_until(lambda: not any(p.running() for p in self.workload), WORKLOAD_EXIT_S,
                       interval=0.2, what="the agent workload to exit")
        except TimeoutError as exc:
            self.say(f"{exc}; not reconciling")
            return 1
        truth = merged_summaries([p.log_path for p in self.workload])
        if truth is None:
            self.say(f"an agent printed no summary; see its log in {self.workdir}")
            return 1
        if self.end_gate is None:
            try:
                wait_until(counted(truth["executions"]), settle_s,
                           interval=min(a.scrape_interval_s, 1.0),
                           what="Prometheus to count every execution")
            except TimeoutError:
                pass
        who = "the agents' /metrics count" if self.agent_metrics else "Prometheus counts"
        got = last if isinstance(last, str) else (last.total, last.successful, last.failed)
        if got != (truth["executions"], truth["successful"], truth["failed"]):
            self.say(f"[{datetime.now():%H:%M:%S}] NOT reconciled: {who} {got} executions "
                     f"(total, ok, failed); the agents counted {truth['executions']} "
                     f"({truth['successful']} ok / {truth['failed']} failed)")
            return 1
        assert isinstance(last, Count)
        self.say(f"[{datetime.now():%H:%M:%S}] whole run: {last.line}")
        self.say(f"reconciled: {who} {truth['executions']} executions "
                 f"({truth['successful']} ok / {truth['failed']} failed), exactly what the "
                 f"agent{'s' if len(self.workload) > 1 else ''} counted")
        return 0

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        if self.pipeline is not None:
            self.pipeline.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.stack.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop after this long, once the pipeline counts exactly the "
                             "executions the agents counted (default: run until Ctrl-C)")
    parser.add_argument("--rate", type=float, default=2.0,
                        help="agent executions per second (default 2)")
    parser.add_argument("--processes", type=int, default=2, help="agent processes (default 2)")
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="simulated latency scale; 1.0 = realistic (default)")
    parser.add_argument("--fail", action="append", metavar="DOMAIN=RATE",
                        help="failure injection passed to the agent (repeatable)")
    parser.add_argument("--seed", type=int, default=None, help="agent random seed")
    parser.add_argument("--api-port", type=int, default=8000,
                        help="API port (default 8000; 0 = any free port)")
    parser.add_argument("--any-ports", action="store_true",
                        help="free ports for everything instead of the standard ones (4317, "
                             "4318, 9090, 9093, 16686, 8000, ...); for tests and runs side by "
                             "side. Without it a busy standard port is replaced by a free one, "
                             "and the change is printed")
    parser.add_argument("--api-workers", type=int, default=2, help="uvicorn workers (default 2)")
    parser.add_argument("--scrape-interval", default="5s",
                        help="Prometheus scrape and rule evaluation interval (default 5s)")
    parser.add_argument("--export-interval-ms", type=int, default=5000,
                        help="agent metric export interval (default 5000)")
    parser.add_argument("--refresh", type=float, default=5.0,
                        help="seconds between terminal summaries (default 5)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help=f"configs, data, logs and pids.json of this run (wiped at start; "
                             f"default {DEFAULT_WORKDIR.relative_to(REPO_ROOT)})")
    parser.add_argument("--embedded", action="store_true",
                        help="no collector: agents serve /metrics in-process for Prometheus")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.processes < 1 or args.time_scale < 0 or args.refresh <= 0:
        parser.error("--rate and --refresh must be > 0, --processes >= 1, --time-scale >= 0")
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be > 0")
    try:
        args.scrape_interval_s = duration_seconds(args.scrape_interval)
    except ValueError as exc:
        parser.error(f"--scrape-interval: {exc}")
    return args


def choose_mode(embedded: bool, say: Callable[[str], None]) -> str:
    """The mode this machine can run, saying why when it is not the one asked for."""
    if components.PROMETHEUS.find() is None:
        say("NOTE: no Prometheus build was found (components/build.sh builds it, which needs "
            "Go), so this runs in AGENTS-ONLY mode: the simulated agents, each serving its "
            "metrics at an in-process /metrics, and the API's /health. The golden-signals "
            "line is computed here from the agents' /metrics (lifetime counts since start). "
            f"There is no Prometheus, no alerting and no traces in this mode; to get them, "
            f"{GET_EVERYTHING}.")
        return AGENTS_ONLY_MODE
    if not embedded and components.COLLECTOR.find() is None:
        say("NOTE: the collector binary is not available (build it with `bash collector/build.sh`, "
            "which needs Go); falling back to EMBEDDED mode: agents serve their metrics "
            "in-process and Prometheus scrapes them directly (no traces backend, no Alertmanager).")
        return EMBEDDED_MODE
    return EMBEDDED_MODE if embedded else COLLECTOR_MODE


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise StopRequested(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def say(line: str) -> None:
        try:
            print(line, flush=True)
        except OSError:  # e.g. a closed pipe (`... | head`): never a reason to skip teardown
            pass

    run = Run(args, say)
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        run.start(choose_mode(args.embedded, say))
        code = run.watch()
    except StopRequested as stop:
        say(f"\n{stop} received")
    except (MissingComponent, ProcessFailed, PipelineError, TimeoutError) as exc:
        say(f"cannot run the pipeline: {exc}")
        code = 2 if isinstance(exc, MissingComponent) else 1
    finally:
        # Teardown must finish: further signals are ignored (every stop is time-bounded).
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        say("stopping the workload, API and pipeline ...")
        run.stop()
        say("stopped.")
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code


if __name__ == "__main__":
    sys.exit(main())
