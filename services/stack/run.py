"""The main job (`make run`): the whole pipeline with a simulated CUGAr workload, on this machine.

    python -m services.stack.run [--duration S] [--rate R] [--processes P] [--embedded] ...

Starts our collector build, Prometheus (repository config and rules) and Alertmanager through
services.stack.pipeline.Pipeline, then the API (uvicorn) and the agent workload as managed
processes; prints the URLs and, every few seconds, the fleet's golden signals as the API
serves them. Ctrl-C or SIGTERM stops everything (each child is a process group, stopped and
waited for); a bounded run (--duration) ends by reconciling Prometheus' count of executions
with the agent's own. Without a collector binary (no Go toolchain to build it) it runs in embedded
mode: each agent process serves its metrics itself and Prometheus scrapes them directly.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType

import httpx
import yaml

from services.api.settings import DEFAULT_SERVICE_NAME as API_SERVICE_NAME
from services.stack import components
from services.stack.components import REPO_ROOT, MissingComponent
from services.stack.pipeline import (API_JOB, COLLECTOR_TELEMETRY_JOB, JAEGER_JOB,
                                     PROMETHEUS_DIR, PROMETHEUS_JOB, Pipeline, PipelineError,
                                     prometheus_process, render_prometheus_config, write_api_key,
                                     write_rules)
from services.stack.process import ManagedProcess, ProcessFailed, free_port, wait_until

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


def format_summary(d: dict) -> str:
    """One line of golden signals from a /dashboard body ('-' = no traffic in the window)."""
    g, e = d["golden_signals"], d["executions"]
    lat = g["latency_ms"]
    if not e["total"]:
        return f"window {d['time_range']['window']}: no executions yet (golden signals absent)"
    steps = "-" if g["steps_per_execution"] is None else f"{g['steps_per_execution']:.2f}"
    return (f"window {d['time_range']['window']}: executions={e['total']} "
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
                        api_key: str | None) -> tuple[ManagedProcess, str]:
    """Prometheus with the repository's config and rules, scraping the agents' in-process
    /metrics endpoints (the alternative metrics path's job, so the rules apply unchanged)."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = render_prometheus_config(
        yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text()),
        scrape_interval=scrape_interval, evaluation_interval=evaluation_interval,
        targets={COLLECTOR_TELEMETRY_JOB: None, JAEGER_JOB: None,
                 PROMETHEUS_JOB: f"127.0.0.1:{port}", API_JOB: api_target},
        alertmanager=None, rules_glob=write_rules(workdir / "rules"),
        api_key_file=write_api_key(workdir, api_key), metrics_targets=targets)
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return prometheus_process(workdir, port, path), f"http://127.0.0.1:{port}"


# --- the run -------------------------------------------------------------------------------
class Run:
    def __init__(self, args: argparse.Namespace, say: Callable[[str], None]) -> None:
        self.args = args
        self.say = say
        self.workdir: Path = args.workdir.resolve()
        self.api_key = os.environ.get("CUGAR_API_KEY") or None
        self.pipeline: Pipeline | None = None
        self.processes: list[ManagedProcess] = []  # ours, in start order
        self.workload: list[ManagedProcess] = []
        self.api_url = ""
        self.started_at = time.time()

    def _launch(self, proc: ManagedProcess, timeout: float = 60.0) -> ManagedProcess:
        self.processes.append(proc)  # registered first: a failed start is still stopped
        return proc.start(timeout=timeout)

    def _api_port(self) -> int:
        port = self.args.api_port
        if port == 0:
            return free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            fallback = free_port()
            self.say(f"port {port} is busy; the API uses {fallback} instead")
            return fallback
        return port

    def _agent_extra(self) -> list[str]:
        extra = []
        for fail in self.args.fail or []:
            extra += ["--fail", fail]
        if self.args.seed is not None:
            extra += ["--seed", str(self.args.seed)]
        return extra

    def start(self, embedded: bool) -> None:
        a = self.args
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        api_port = self._api_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        duration = a.duration if a.duration else 10 * 365 * 24 * 3600.0
        agent_env = {"OTEL_SERVICE_NAME": AGENT_SERVICE_NAME,
                     "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=local"}
        if embedded:
            urls = self._start_embedded(api_port, duration, agent_env)
        else:
            urls = self._start_pipeline(api_port, duration, agent_env)
        self.say("")
        self.say(f"CUGAr telemetry pipeline is up ({'EMBEDDED mode' if embedded else 'collector mode'})")
        width = max(len(k) for k in urls)
        for label, url in urls.items():
            self.say(f"  {label.ljust(width)}  {url}")
        self.say(f"Workload: {a.rate:g} executions/s over {a.processes} agent process(es), "
                 f"time scale {a.time_scale:g}"
                 + (f", for {a.duration:g}s" if a.duration else "") + ". Ctrl-C stops everything.")
        self.say("")

    def _start_pipeline(self, api_port: int, duration: float,
                        agent_env: dict[str, str]) -> dict[str, str]:
        a = self.args
        self.say("starting Jaeger, the collector, Alertmanager and Prometheus ...")
        self.pipeline = Pipeline(self.workdir / "pipeline", scrape_interval=a.scrape_interval,
                                 evaluation_interval=a.scrape_interval, alertmanager=True,
                                 api_target=f"127.0.0.1:{api_port}", api_key=self.api_key,
                                 webhook_base_url=self.api_url)  # POST /alerts/<severity>
        self.pipeline.start()
        p = self.pipeline
        self.say("starting the API and the agent workload ...")
        self._launch(api_process(self.workdir, api_port, p.prometheus_url, p.collector_health_url,
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
                "Alertmanager": p.alertmanager_url or "-",
                "Collector OTLP": f"gRPC {p.otlp_grpc_endpoint}  HTTP {p.otlp_http_endpoint}",
                "Jaeger UI (traces)": p.jaeger_url or "-",
                "Logs": str(self.workdir)}

    def _start_embedded(self, api_port: int, duration: float,
                        agent_env: dict[str, str]) -> dict[str, str]:
        a = self.args
        # One agent process per port: each serves its own /metrics in-process.
        ports = [free_port() for _ in range(a.processes)]
        prometheus, prometheus_url = embedded_prometheus(
            self.workdir, [f"127.0.0.1:{port}" for port in ports], f"127.0.0.1:{api_port}",
            a.scrape_interval, a.scrape_interval, self.api_key)
        self.say("starting Prometheus ...")
        self._launch(prometheus)
        no_export = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
        self.say("starting the API and the agent workload ...")
        self._launch(api_process(self.workdir, api_port, prometheus_url, None, no_export,
                                 workers=a.api_workers, api_key=self.api_key))
        rate = a.rate / a.processes
        for i, port in enumerate(ports):
            proc = ManagedProcess(
                f"agent-{i}", agent_argv(rate, duration, 1, a.time_scale, self._agent_extra()),
                self.workdir / f"agent-{i}.log",
                env={**no_export, **agent_env, "CUGAR_EMBEDDED_PROMETHEUS_PORT": str(port)},
                cwd=REPO_ROOT)
            self.workload.append(self._launch(proc))
        endpoints = ", ".join(f"http://127.0.0.1:{port}/metrics" for port in ports)
        return {"API / live dashboard": f"{self.api_url}/dashboard",
                "API docs": f"{self.api_url}/docs",
                "Prometheus": prometheus_url,
                "Agent /metrics": endpoints,
                "Logs": str(self.workdir)}

    def watch(self) -> int:
        """Print the golden signals every `refresh` seconds until the duration ends."""
        a = self.args
        deadline = time.monotonic() + a.duration if a.duration else None
        while True:
            stamp = datetime.now().strftime("%H:%M:%S")
            self.say(f"[{stamp}] {fetch_summary(self.api_url, self.api_key)}")
            for proc in self.processes:
                if not proc.running() and (proc not in self.workload or a.duration is None):
                    self.say(f"{proc.name} exited unexpectedly; log tail:\n{proc.log_tail()}")
                    return 1
            if deadline is not None and time.monotonic() >= deadline:
                return self.reconcile()
            pause = a.refresh if deadline is None else min(a.refresh, deadline - time.monotonic())
            time.sleep(max(pause, 0.0))

    def reconcile(self) -> int:
        """After a bounded run: let the workload finish and flush, then check that Prometheus
        counts exactly the executions the agent counted (non-zero exit when it does not)."""
        a = self.args
        self.say("workload duration reached; waiting for the agents to finish and flush ...")
        try:
            wait_until(lambda: not any(p.running() for p in self.workload), WORKLOAD_EXIT_S,
                       interval=0.2, what="the agent workload to exit")
        except TimeoutError as exc:
            self.say(f"{exc}; not reconciling")
            return 1
        if self.pipeline is None:
            self.say("embedded mode: an exited agent's in-process /metrics is gone, so its last "
                     "counts are never scraped; the final reconciliation needs the collector.")
            return 0
        truth = agent_summary(self.workload[0].log_path)
        if truth is None:
            self.say(f"the agent printed no summary; see {self.workload[0].log_path}")
            return 1
        window = whole_run_window(time.time() - self.started_at)
        body: dict | str = ""

        def counted() -> bool:
            nonlocal body
            body = fetch_dashboard(self.api_url, self.api_key, window)
            return isinstance(body, dict) and body["executions"]["total"] == truth["executions"]

        # The last export travels: agent -> collector -> next scrape -> next rule evaluation.
        settle_s = 3 * a.scrape_interval_s + 2 * a.export_interval_ms / 1000 + 10
        try:
            wait_until(counted, settle_s, interval=min(a.scrape_interval_s, 1.0),
                       what="Prometheus to count every execution")
        except TimeoutError:
            got = body if isinstance(body, str) else body["executions"]["total"]
            self.say(f"[{datetime.now():%H:%M:%S}] NOT reconciled after {settle_s:.0f}s: "
                     f"Prometheus counts {got} executions, the agent counted "
                     f"{truth['executions']}")
            return 1
        self.say(f"[{datetime.now():%H:%M:%S}] whole run: {format_summary(body)}")
        self.say(f"reconciled: Prometheus counts {truth['executions']} executions "
                 f"({truth['successful']} ok / {truth['failed']} failed), exactly what the agent "
                 f"counted")
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
                        help="stop after this long, once Prometheus counts exactly the "
                             "executions the agent counted (default: run until Ctrl-C)")
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
    parser.add_argument("--api-workers", type=int, default=2, help="uvicorn workers (default 2)")
    parser.add_argument("--scrape-interval", default="15s",
                        help="Prometheus scrape and rule evaluation interval (default 15s)")
    parser.add_argument("--export-interval-ms", type=int, default=5000,
                        help="agent metric export interval (default 5000)")
    parser.add_argument("--refresh", type=float, default=5.0,
                        help="seconds between terminal summaries (default 5)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help=f"configs, data and logs of this run (wiped at start; default "
                             f"{DEFAULT_WORKDIR.relative_to(REPO_ROOT)})")
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


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise StopRequested(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def say(line: str) -> None:
        try:
            print(line, flush=True)
        except OSError:  # e.g. a closed pipe (`... | head`): never a reason to skip teardown
            pass

    embedded = args.embedded
    if not embedded and components.COLLECTOR.find() is None:
        say("NOTE: the collector binary is not available (build it with `bash collector/build.sh`, "
            "which needs Go); falling back to EMBEDDED mode: agents serve their metrics "
            "in-process and Prometheus scrapes them directly (no traces backend, no Alertmanager).")
        embedded = True
    run = Run(args, say)
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        run.start(embedded)
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
